"""Where the candidate photos come from: the Debian packages and scikit-image's wheel.

``SOURCES`` says, for each package, which of its files to look at and how to name and
license them; ``fetch`` downloads the packages, ``all_candidates`` reads them.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from ml.images import IMAGE_SUFFIXES
from tools.photos.formats import deb_members, deb_package, dep5_licence, parse_dep5, read_rcc
from tools.photos.lists import OPENCV_TUTORIAL_PHOTOS, SKIMAGE_PHOTOS
from tools.photos.reserved import check_not_reserved


@dataclass
class Candidate:
    """One image a source offers: where it comes from and how to read it."""

    source: str  # the package (Debian) or wheel it comes from, e.g. "gcompris-qt-data"
    original: str  # its path there ("/usr/share/...", "x.rcc:inner/path", "skimage/data/x")
    name: str  # output file stem
    licence: str
    load: Callable[[], Image.Image] = field(repr=False)
    version: str = ""

    @property
    def key(self) -> str:
        return f"{self.source}:{self.original}"


@dataclass(frozen=True)
class DebSource:
    """Where a Debian package keeps its photos and how to name and license them."""

    include: tuple[str, ...]  # globs over the package's paths (no leading "/")
    tag: str  # output names start with it ("" keeps the bare file stem)
    rcc: bool = False  # the included files are Qt resource bundles to open
    # maps an installed path (no leading "/") to the source path debian/copyright uses
    licence_path: Callable[[str], str] = field(default=lambda path: path)
    licences: tuple[tuple[str, str], ...] = ()  # (glob over original, licence) overrides
    plasma: bool = False  # KDE wallpaper packages: one (largest) file per folder
    # the output name (after the tag) of an original path
    stem: Callable[[str], str] = field(default=lambda original: PurePosixPath(original).stem)


def rcc_stem(original: str) -> str:
    """``activity-name`` for GCompris's ``x.rcc:gcompris/src/activities/ACTIVITY/...``."""
    inner = PurePosixPath(original.partition(":")[2])
    return f"{inner.parts[3]}-{inner.stem}" if len(inner.parts) > 4 else inner.stem


def kde_stem(original: str) -> str:
    """The wallpaper's folder name (``-dark`` for its dark variant)."""
    path = PurePosixPath(original)
    return path.parents[2].name + ("-dark" if path.parent.name == "images_dark" else "")


def _lomiri(release: str) -> DebSource:
    return DebSource(include=("usr/share/backgrounds/*.jpg",), tag="lomiri",
                     licence_path=lambda path: f"{release}/{PurePosixPath(path).name}")


OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
OPENCV_DOC = "usr/share/doc/opencv-doc"

# The packages photos are taken from, in this order (earlier ones win a near-duplicate).
SOURCES: dict[str, DebSource] = {
    "opencv-doc": DebSource(
        include=(f"{OPENCV_DATA}/*.jpg", f"{OPENCV_DATA}/*.png",
                 *(f"{OPENCV_DOC}/{path}" for path in OPENCV_TUTORIAL_PHOTOS)),
        tag="", licence_path=lambda path: path.replace(OPENCV_DATA, "samples/data")
        .replace(f"{OPENCV_DOC}/opencv4/html", "doc").replace(f"{OPENCV_DOC}/", ""),
        # examples/data keep their bare names (the original held-out eight use them)
        stem=lambda original: PurePosixPath(original).stem if original.startswith(
            f"/{OPENCV_DATA}/") else f"opencv-{PurePosixPath(original).stem}"),
    "gcompris-qt-data": DebSource(
        include=("usr/share/gcompris-qt/rcc/*.rcc",), tag="gcompris", rcc=True,
        licence_path=lambda path: path.partition(":")[2].removeprefix("gcompris/"),
        stem=rcc_stem),
    "lomiri-wallpapers-16.04": _lomiri("16.04"),
    "lomiri-wallpapers-20.04": _lomiri("20.04"),
    "plasma-workspace-wallpapers": DebSource(
        include=("usr/share/wallpapers/*/contents/images/*",
                 "usr/share/wallpapers/*/contents/images_dark/*"),
        tag="plasma", plasma=True, stem=kde_stem),
    "palapeli-data": DebSource(include=("usr/share/palapeli/collection/*.jpg",), tag="palapeli"),
    "lxqt-themes": DebSource(
        include=("usr/share/lxqt/wallpapers/*.jpg", "usr/share/lxqt/wallpapers/*.png"),
        tag="lxqt", licence_path=lambda path: f"wallpapers/{PurePosixPath(path).name}",
        licences=(("*/lxqt/wallpapers/*", "CC-BY-SA-3.0 (wallpapers/License; "
                   "debian/copyright: LGPL-2.1+)"),)),
    "scribus-template": DebSource(
        include=("usr/share/scribus/templates/*/*.jpg", "usr/share/scribus/templates/*/*.png"),
        tag="scribus", stem=lambda original: "-".join(PurePosixPath(original).parts[-2:])
        .rsplit(".", 1)[0],
        licences=(("*/templates/br2/*", "public-domain (Riku Leino, per debian/copyright)"),
                  ("*/templates/cal2/*", "public-domain (Riku Leino, per debian/copyright)"),
                  ("*/templates/menu2/*", "public-domain (Riku Leino, per debian/copyright)"))),
    "tuxpaint-data": DebSource(
        include=("usr/share/tuxpaint/templates/*.jpg", "usr/share/tuxpaint/starters/*-back.*"),
        tag="tuxpaint",
        licences=(("*/starters/skyline-sf-dusk*", "public-domain (NOAA, per AUTHORS.txt)"),
                  ("*/starters/reef*", "public-domain (NOAA, per AUTHORS.txt)"))),
}

# The packages looked at and left out whole (no usable photograph): docs/design/photos.md.

# --------------------------------------------------------------------------- reading


def skimage_photos(wheel: Path) -> Iterator[Candidate]:
    """The colour photos in a scikit-image wheel (``SKIMAGE_PHOTOS``)."""
    check_not_reserved(Path(wheel).name.split("-")[0].replace("_", "-"), str(wheel))
    version = Path(wheel).name.split("-")[1] if "-" in Path(wheel).name else ""
    archive = zipfile.ZipFile(wheel)
    present = set(archive.namelist())
    for name, licence in SKIMAGE_PHOTOS.items():
        member = f"skimage/data/{name}"
        if member not in present:
            continue
        yield Candidate("scikit-image", member, Path(name).stem, licence,
                        lambda member=member: Image.open(io.BytesIO(archive.read(member))),
                        version)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def deb_photos(deb: Path, source: DebSource, licences_dir: Path | None = None,
               skipped: list | None = None) -> Iterator[Candidate]:
    """The candidate images of one Debian package, read straight from its .deb."""
    package, version = deb_package(deb)
    check_not_reserved(package, str(deb))
    copyright_path = f"usr/share/doc/{package}/copyright"
    files = deb_members(deb, (*source.include, copyright_path,
                              "usr/share/wallpapers/*/metadata.json"))
    copyright_text = files.pop(copyright_path, b"").decode("utf-8", "replace")
    rules = parse_dep5(copyright_text)
    if licences_dir is not None and copyright_text:
        licences_dir.mkdir(parents=True, exist_ok=True)
        (licences_dir / f"{package}.copyright").write_text(copyright_text)
    metadata = {path: files.pop(path) for path in list(files) if path.endswith("metadata.json")}

    def licence(original: str) -> str:
        for pattern, text in source.licences:
            if fnmatch.fnmatchcase(original, pattern):
                return text
        found = dep5_licence(rules, source.licence_path(original.lstrip("/")))
        return found or f"see /usr/share/doc/{package}/copyright"

    images: list[tuple[str, Callable[[], Image.Image]]] = []
    for path, data in sorted(files.items()):
        if source.rcc:
            try:
                inner = read_rcc(data)
            except ValueError as error:
                if skipped is not None:
                    skipped.append((package, f"/{path}", f"unreadable rcc: {error}"))
                continue
            for inner_path, payload in sorted(inner.items()):
                if inner_path.lower().endswith(IMAGE_SUFFIXES):
                    images.append((f"/{path}:{inner_path}",
                                   lambda payload=payload: Image.open(io.BytesIO(payload))))
        elif path.lower().endswith(IMAGE_SUFFIXES):
            images.append((f"/{path}", lambda data=data: Image.open(io.BytesIO(data))))
    if source.plasma:
        images = _largest_per_folder(images, skipped, package)

    for original, load in images:
        check_not_reserved(package, original)
        lic = licence(original)
        if source.plasma:  # KDE wallpapers state their own licence too
            folder = PurePosixPath(original).parents[2].name
            meta = metadata.get(f"usr/share/wallpapers/{folder}/metadata.json")
            upstream = json.loads(meta).get("KPlugin", {}).get("License") if meta else None
            if upstream:
                lic = f"{upstream} (metadata.json); {lic} (debian/copyright)"
        stem = source.stem(original)
        name = _slug(f"{source.tag}-{stem}" if source.tag else stem)
        yield Candidate(package, original, name, lic, load, version)


def _largest_per_folder(images, skipped, package):
    """KDE wallpapers ship one picture at many sizes (``WxH.jpg``): keep the largest."""
    def pixels(original):
        match = re.match(r"(\d+)x(\d+)", PurePosixPath(original).name)
        width, height = (int(match[1]), int(match[2])) if match else (0, 0)
        return (width >= height, width * height)  # landscape first, then the largest

    folders: dict[str, list] = {}
    for original, load in images:
        folders.setdefault(str(PurePosixPath(original).parent), []).append((original, load))
    kept = []
    for _folder, items in sorted(folders.items()):
        items.sort(key=lambda item: pixels(item[0]), reverse=True)
        kept.append(items[0])
        for original, _ in items[1:]:
            if skipped is not None:
                skipped.append((package, original, f"another size of {items[0][0]}"))
    return sorted(kept)


def all_candidates(debs: Path | None, skimage_wheel: Path | None,
                   licences_dir: Path | None, skipped: list) -> Iterator[Candidate]:
    """Every source's candidates, in ``SOURCES`` order after scikit-image's."""
    if skimage_wheel:
        yield from skimage_photos(skimage_wheel)
        if licences_dir is not None:
            licences_dir.mkdir(parents=True, exist_ok=True)
            (licences_dir / "scikit-image.txt").write_text("".join(
                f"skimage/data/{name}: {licence}\n" for name, licence in SKIMAGE_PHOTOS.items()))
    if not debs:
        return
    by_package: dict[str, Path] = {}
    for deb in sorted(Path(debs).glob("*.deb")):
        package, _ = deb_package(deb)
        check_not_reserved(package, str(deb))
        by_package[package] = deb  # the newest file name sorts last
    for package, source in SOURCES.items():
        if package in by_package:
            yield from deb_photos(by_package[package], source, licences_dir, skipped)
        else:
            print(f"warning: no {package} .deb in {debs} (python -m tools.photos fetch {debs})")


# --------------------------------------------------------------------------- fetch


def fetch(folder: Path, packages: Iterable[str] = tuple(SOURCES)) -> list[Path]:
    """``apt-get download`` the packages that have no .deb in ``folder`` yet.

    Nothing is installed. When apt's package lists are missing or stale, they are
    refreshed once (``apt-get update``: as root, or through ``sudo -n``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    packages = list(packages)
    for package in packages:
        check_not_reserved(package)
    have = {deb_package(deb)[0] for deb in folder.glob("*.deb")}
    missing = [package for package in packages if package not in have]
    if missing and subprocess.run(["apt-get", "download", *missing], cwd=folder).returncode:
        update = ["apt-get", "update", "-qq"]
        if os.geteuid() != 0:
            if not shutil.which("sudo"):
                raise RuntimeError("apt-get download failed; run apt-get update as root")
            update = ["sudo", "-n", *update]
        subprocess.run(update, check=True)
        have = {deb_package(deb)[0] for deb in folder.glob("*.deb")}
        for package in (package for package in missing if package not in have):
            if subprocess.run(["apt-get", "download", package], cwd=folder).returncode:
                print(f"warning: apt-get download {package} failed; its photos are left out")
    return sorted(deb for deb in folder.glob("*.deb") if deb_package(deb)[0] in packages)
