"""Content photos that can be had offline, for training and evaluating styles here.

    python -m ml.photos fetch DEBS                  # apt-get download the Debian packages below
    python -m ml.photos collect DEST --debs DEBS [--skimage-wheel WHEEL] [--max-side 512]
    python -m ml.photos sheet DEST                  # contact sheets of what was kept, to look at

``collect`` reads the photos that scikit-image's wheel and a few Debian packages ship
(``SOURCES``; docs/design/photos.md says why these and what each holds), keeps the
colour photographs (greyscale images, drawings, renders, logos, screenshots, tiny images
and near-duplicates are left out: a heuristic filter, then the hand-made ``SKIP`` list
written after looking at every candidate), and writes them under ``DEST/train/`` (JPEG)
and ``DEST/holdout/`` (PNG, ``HOLDOUT``: kept out of training, a spread of subjects).
``DEST/manifest.csv`` lists every kept photo (file, split, source package, original path,
licence), ``DEST/skipped.csv`` every file left out with the reason, and
``DEST/licences/`` holds each package's copyright file. A second run rebuilds both
folders. On a connected machine, train on COCO instead (``python -m ml.data fetch-coco``).

Debian's ``mate-backgrounds`` and the sample images of the scikit-learn and matplotlib
wheels are reserved for outside evaluation: ``check_not_reserved`` refuses them anywhere.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from ml.images import IMAGE_SUFFIXES

MIN_SIDE = 256  # shorter side of a usable photo, in pixels
MAX_SIDE = 512  # photos are shrunk to this shorter side when written
JPEG_QUALITY = 92
PHASH_DISTANCE = 12  # of 64 bits: at most this far apart is "the same photo"

# --------------------------------------------------------------------------- reserved

# Never to train or tune on (BRIEF.md §3): kept for outside evaluation.
RESERVED_PACKAGES = {"mate-backgrounds", "scikit-learn", "sklearn", "matplotlib",
                     "python3-sklearn", "python3-matplotlib", "python-matplotlib-data"}
RESERVED_PREFIXES = ("mate-backgrounds", "scikit-learn", "scikit_learn", "matplotlib")
RESERVED_PATHS = (
    "*mate-backgrounds*", "*/backgrounds/mate/*", "*sklearn/datasets/images*",
    "*scikit_learn*", "*mpl-data/sample_data*", "*/matplotlib/sample_data*",
    "*matplotlib-*.whl*",
)


class ReservedSourceError(ValueError):
    """A source kept for outside evaluation was offered as training material."""


def check_not_reserved(source: str, original: str = "") -> None:
    """Raise ``ReservedSourceError`` for mate-backgrounds, scikit-learn or matplotlib data."""
    lowered_source = source.lower()
    if lowered_source in RESERVED_PACKAGES or lowered_source.startswith(RESERVED_PREFIXES):
        raise ReservedSourceError(f"{source} is reserved for outside evaluation")
    lowered = original.lower()
    for pattern in RESERVED_PATHS:
        if fnmatch.fnmatchcase(lowered, pattern):
            raise ReservedSourceError(f"{original} is reserved for outside evaluation")


# --------------------------------------------------------------------------- Qt rcc


def read_rcc(data: bytes) -> dict[str, bytes]:
    """The files inside a Qt resource bundle (``.rcc``, formats 1 to 3), by path.

    Layout (qtbase ``rcc.cpp``): a 20-byte header ("qres", version, tree, data and
    names offsets, big-endian; version 3 adds a flags word), a tree of fixed-size nodes
    (name offset, flags, then a directory's child count and first child, or a file's
    locale and data offset; version 2+ adds a modification time), names as UTF-16BE with
    a length and hash, and data as a 4-byte length then bytes. Zlib-compressed files
    (flag 1) start with their uncompressed length; zstd ones (flag 4) are refused.
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle (no 'qres' magic)")
    version, tree, blobs, names = struct.unpack_from(">IIII", data, 4)
    if version not in (1, 2, 3):
        raise ValueError(f"unsupported rcc format version {version}")
    node_size = 14 if version == 1 else 22
    files: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # length (2) and hash (4)
        return data[start:start + 2 * length].decode("utf-16-be")

    def walk(node: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise ValueError("rcc tree too deep (corrupt file?)")
        base = tree + node * node_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        path = prefix if node == 0 else f"{prefix}{name_at(name_offset)}"
        if flags & 0x02:  # directory
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, f"{path}/" if path else "", depth + 1)
            return
        (offset,) = struct.unpack_from(">I", data, base + 10)
        (size,) = struct.unpack_from(">I", data, blobs + offset)
        payload = data[blobs + offset + 4:blobs + offset + 4 + size]
        if flags & 0x04:
            raise ValueError(f"{path}: zstd-compressed rcc entries are not supported")
        if flags & 0x01:
            payload = zlib.decompress(payload[4:])
        files[path] = payload

    try:
        walk(0, "", 0)
    except (struct.error, UnicodeDecodeError, zlib.error) as error:
        raise ValueError(f"corrupt rcc file: {error}") from error
    return files


# --------------------------------------------------------------------------- licences


def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """(patterns, licence) for each ``Files:`` stanza of a machine-readable copyright file."""
    rules = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            licence = fields["License"].splitlines()[0].strip()
            rules.append((fields["Files"].split(), licence))
    return rules


def dep5_licence(rules: list[tuple[list[str], str]], path: str) -> str | None:
    """The licence of ``path`` (a source-tree path): the last matching stanza wins.

    For the WebP files GCompris converts its photos to, also tries the JPEG/PNG names
    its copyright file lists.
    """
    path = path.lstrip("/")
    names = [path]
    stem, dot, suffix = path.rpartition(".")
    if dot and suffix.lower() == "webp":
        names += [f"{stem}.{other}" for other in ("jpg", "jpeg", "png")]
    found = None
    for patterns, licence in rules:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names):
            found = licence
    return found


# --------------------------------------------------------------------------- sources


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
# opencv-doc's tutorial images are mostly plots, screenshots and annotated results:
# only these clean photographs (picked by eye from 464 candidates) are taken.
OPENCV_TUTORIAL_PHOTOS = (
    "examples/alphamat/input_images/plant.jpg", "examples/dnn_superres/butterfly.png",
    "examples/reg/home.png", "examples/text/scenetext0[1-6].jpg",
    "examples/text/scenetext_segmented_word0[1-4].jpg",
    "opencv4/html/227943776_1.jpg", "opencv4/html/230501201_1.jpg",
    "opencv4/html/4_barcodes.jpg", "opencv4/html/Background_Subtraction_Tutorial_frame.jpg",
    "opencv4/html/Harris_Detector_Original_Image.jpg", "opencv4/html/astra_color.jpg",
    "opencv4/html/fusion.png", "opencv4/html/fusion_mertens.jpg", "opencv4/html/handSrc.jpg",
    "opencv4/html/pexels_double_decker_bus.jpg", "opencv4/html/plant.jpg",
    "opencv4/html/retina_TreeHdr_small.jpg", "opencv4/html/space_shuttle.jpg",
    "opencv4/html/studentsSample_input.jpg",
)

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

SKIMAGE_PHOTOS = {
    "astronaut.png": "public-domain (NASA)",
    "chelsea.png": "CC0-1.0 (Stefan van der Walt)",
    "coffee.png": "CC0-1.0 (Rachel Michetti)",
    "hubble_deep_field.jpg": "public-domain (NASA)",
    "motorcycle_left.png": "Middlebury 2014 stereo data set (no licence stated)",
    "retina.jpg": "CC0-1.0 (Häggström, Wikimedia Commons)",
    "rocket.jpg": "public-domain (SpaceX)",
}

# --------------------------------------------------------------------------- hand skips

NOT_PHOTO = "not a photograph (drawing, chart, text, logo or calibration target)"
RENDER = "render, drawing or abstract wallpaper, not a photograph"
PAINTING = "a painting (style material, never content)"
SCREEN = "a screenshot or an annotated/processed result"
DUPLICATE = "a near-copy of another photo kept (stereo pair, crop or processed copy)"
TEXTURE = "a close-up texture, not a scene"


def _keys(source: str, prefix: str, names: Iterable[str], reason: str) -> dict[str, str]:
    return {f"{source}:{prefix}{name}": reason for name in names}


# Written after looking at contact sheets of every candidate that passes the
# heuristics: fnmatch patterns over "package:original path" -> reason.
SKIP: dict[str, str] = {
    **_keys("opencv-doc", f"/{OPENCV_DATA}/", (
        "LinuxLogo.jpg", "WindowsLogo.jpg", "opencv-logo.png", "opencv-logo-white.png",
        "digits.png", "notes.png", "ml.png", "cards.png", "sudoku.png", "gradient.png",
        "ellipses.jpg", "detect_blob.png", "chessboard.png", "imageTextN.png",
        "imageTextR.png", "text_defocus.jpg", "text_motion.jpg", "mask.png", "aloeGT.png",
        "templ.png", "tmpl.png", "pca_test1.jpg", "box.png", "HappyFish.jpg",
        "Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg", "pic[1-6].png",
    ), NOT_PHOTO),
    f"opencv-doc:/{OPENCV_DATA}/licenseplate_motion.jpg": SCREEN,
    f"opencv-doc:/{OPENCV_DATA}/starry_night.jpg": PAINTING,
    **_keys("opencv-doc", f"/{OPENCV_DATA}/", (
        "aloeR.jpg", "leuvenB.jpg", "rubberwhale2.png", "basketball2.png", "graf3.png",
        "aero3.jpg", "right.jpg", "ela_modified.jpg",
    ), DUPLICATE),
    "gcompris-qt-data:*/lang.rcc:*": "a drawing (word-learning pictures)",
    "gcompris-qt-data:*/paintings.rcc:*": PAINTING,
    "gcompris-qt-data:*/babyshapes.rcc:*": "paintings and photos with cut-out shapes",
    **_keys("gcompris-qt-data", "*/details.rcc:*/", (
        "*Gogh*", "Eglise_dAuvers*", "PortraitOfPereTanguy*"), PAINTING),
    "gcompris-qt-data:*/digital_electricity.rcc:*texture*": TEXTURE,
    "gcompris-qt-data:*/hangman.rcc:*": RENDER,
    **_keys("lomiri-wallpapers-16.04", "/usr/share/backgrounds/", (
        "analogpattern_*", "umang_*"), RENDER),
    **_keys("lomiri-wallpapers-20.04", "/usr/share/backgrounds/", (
        "Fossa_*", "Infinite-Sea_*", "Painting-Colors_*"), RENDER),
    **_keys("plasma-workspace-wallpapers", "/usr/share/wallpapers/", (
        f"{name}/*" for name in (
            "Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow",
            "FlyingKonqui", "Honeywave", "IceCold", "Kay", "Kokkini", "MilkyWay", "Next",
            "Opal", "PastelHills", "Patak", "SafeLanding", "Shell", "Volna", "DarkestHour",
        )), RENDER),
    **_keys("lxqt-themes", "/usr/share/lxqt/wallpapers/", (
        "waves-*", "triangles*", "origami-*", "lxqt-origami-*", "plasma-*", "plasma_*",
        "kde-plasma.png", "simple_blue_widescreen.png", "debug.png",
    ), RENDER),
    **_keys("scribus-template", "/usr/share/scribus/templates/", (
        "scribus_project_*", "nl1-bw/*"), SCREEN),
    **_keys("tuxpaint-data", "/usr/share/tuxpaint/templates/", (
        "burnt_bark.jpg", "mossy_bark.jpg", "mudstone.jpg"), TEXTURE),
}

# Kept out of training: a spread of subjects. The first eight are the original
# held-out photos (astronaut ... home); tests and serving/STYLES.md rely on them.
HOLDOUT = {
    "scikit-image:skimage/data/astronaut.png", "scikit-image:skimage/data/chelsea.png",
    "scikit-image:skimage/data/coffee.png",
    *(f"opencv-doc:/{OPENCV_DATA}/{name}" for name in (
        "baboon.jpg", "fruits.jpg", "building.jpg", "butterfly.jpg", "home.jpg")),
    # people
    f"opencv-doc:/{OPENCV_DOC}/opencv4/html/227943776_1.jpg",
    "gcompris-qt-data:/usr/share/gcompris-qt/rcc/explore_world_music.rcc:"
    "gcompris/src/activities/explore_world_music/resource/music/mexico.webp",
    # indoor
    f"opencv-doc:/{OPENCV_DOC}/opencv4/html/studentsSample_input.jpg",
    "lomiri-wallpapers-16.04:/usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
    # animals
    "gcompris-qt-data:/usr/share/gcompris-qt/rcc/erase.rcc:"
    "gcompris/src/activities/erase/resource/kitten.webp",
    "gcompris-qt-data:/usr/share/gcompris-qt/rcc/explore_world_animals.rcc:"
    "gcompris/src/activities/explore_world_animals/resource/animals/panda.webp",
    # food
    "scribus-template:/usr/share/scribus/templates/menu2/pizza.jpg",
    "palapeli-data:/usr/share/palapeli/collection/citrus-fruits.jpg",
    # city and buildings
    f"opencv-doc:/{OPENCV_DOC}/examples/text/scenetext06.jpg",
    "gcompris-qt-data:/usr/share/gcompris-qt/rcc/explore_monuments.rcc:"
    "gcompris/src/activities/explore_monuments/resource/wonders/colosseum.webp",
    # landscapes
    "lomiri-wallpapers-16.04:/usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "plasma-workspace-wallpapers:/usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
    "tuxpaint-data:/usr/share/tuxpaint/templates/ocean_waves.jpg",
    # objects
    "gcompris-qt-data:/usr/share/gcompris-qt/rcc/categorization.rcc:"
    "gcompris/src/activities/categorization/resource/images/alphabets/alphabets.webp",
    "lomiri-wallpapers-16.04:/usr/share/backgrounds/Picture_1A_by_freespace.jpg",
    "plasma-workspace-wallpapers:/usr/share/wallpapers/ColorfulCups/contents/images/"
    "2560x1600.jpg",
}


def skip_reason(key: str, skips: dict[str, str] = SKIP) -> str | None:
    for pattern, reason in skips.items():
        if fnmatch.fnmatchcase(key, pattern):
            return reason
    return None


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


def deb_package(deb: Path) -> tuple[str, str]:
    """(package, version) from a .deb's file name (``name_version_arch.deb``)."""
    name, version, *_ = Path(deb).name.split("_")
    return name, version.replace("%3a", ":")


def deb_members(deb: Path, globs: Iterable[str]) -> dict[str, bytes]:
    """The files of a .deb whose paths match ``globs`` (read with ``dpkg-deb``)."""
    globs = tuple(globs)
    found = {}
    process = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as tar:
            for member in tar:
                path = member.name.removeprefix("./")
                if member.isfile() and any(fnmatch.fnmatchcase(path, g) for g in globs):
                    found[path] = tar.extractfile(member).read()
        process.stdout.read()  # the tar stream's padding, so dpkg-deb ends cleanly
    finally:
        process.stdout.close()
        code = process.wait()
    if code:
        raise RuntimeError(f"dpkg-deb could not read {deb} (exit status {code})")
    return found


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


# --------------------------------------------------------------------------- filters


def _thumbnail(image: Image.Image, short_side: int = 256) -> np.ndarray:
    rgb = image.convert("RGB")
    scale = short_side / min(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return np.asarray(rgb.resize(size, Image.Resampling.BOX), dtype=np.float32)


def photo_problem(image: Image.Image, min_side: int = MIN_SIDE) -> str | None:
    """Why ``image`` is not a usable colour photograph, or None if it may be one.

    Catches what a heuristic can: small images, transparency (cut-outs and stickers),
    greyscale, and drawings, logos, charts and gradients (few colours, large flat areas,
    little texture). Renders and paintings pass: those are in the hand-made ``SKIP``.
    """
    if min(image.size) < min_side:
        return f"too small ({image.width}x{image.height}, shorter side under {min_side})"
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if (alpha < 250).mean() > 0.01:
            return "transparent background (a cut-out or a drawing)"
    pixels = _thumbnail(image)
    chroma = float(np.abs(pixels - pixels.mean(axis=2, keepdims=True)).mean())
    if chroma < 4.0:
        return "greyscale or nearly"
    codes = (pixels // 8).astype(np.int32) @ np.array([1024, 32, 1])
    _, counts = np.unique(codes, return_counts=True)
    if len(counts) < 200 or np.sort(counts)[::-1][:16].sum() > 0.85 * codes.size:
        return "few colours (a drawing, logo or chart)"
    grey = pixels.mean(axis=2)
    laplacian = np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
                       - grey[1:-1, :-2] - grey[1:-1, 2:])
    if (laplacian < 0.5).mean() > 0.45:
        return "large flat areas (a drawing, render or gradient)"
    rows, cols = grey.shape[0] // 16, grey.shape[1] // 16
    tiles = grey[:rows * 16, :cols * 16].reshape(rows, 16, cols, 16).std(axis=(1, 3))
    if (tiles > 4.0).mean() < 0.15:
        return "almost no texture (a gradient or blurred render)"
    return None


def is_colour_photo(image: Image.Image) -> bool:
    """A photo worth training on: big enough, opaque, in colour, with texture."""
    return photo_problem(image) is None


_DCT = np.cos(np.pi * np.outer(np.arange(8), 2 * np.arange(32) + 1) / 64)  # DCT-II rows


def phash(image: Image.Image) -> int:
    """A 64-bit perceptual hash: signs of the 8x8 lowest DCT frequencies of a 32x32 grey.

    Resolution, JPEG/WebP re-encoding and light/dark variants of one picture land a few
    bits apart; different photos land about 32 apart.
    """
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), np.float64)
    coefficients = _DCT @ grey @ _DCT.T
    flat = coefficients.flatten()
    bits = flat > np.median(flat[1:])
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


# --------------------------------------------------------------------------- collect


@dataclass
class Report:
    kept: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    missing_holdout: list[str] = field(default_factory=list)  # HOLDOUT keys never offered

    @property
    def counts(self) -> dict[str, int]:
        train = sum(row["split"] == "train" for row in self.kept)
        return {"train": train, "holdout": len(self.kept) - train, "skipped": len(self.skipped)}


MANIFEST_FIELDS = ("file", "split", "source", "version", "original", "licence",
                   "width", "height", "phash")
SKIPPED_FIELDS = ("source", "original", "reason")


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    image = image.convert("RGB")
    if min(image.size) > max_side:
        scale = max_side / min(image.size)
        size = (max(max_side, round(image.width * scale)),
                max(max_side, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def collect(dest: Path, sources: Iterable[Candidate], holdout: set[str] = HOLDOUT,
            skips: dict[str, str] = SKIP, max_side: int = MAX_SIDE,
            pre_skipped: Iterable[tuple[str, str, str]] = ()) -> Report:
    """Write the kept photos under ``dest/train`` and ``dest/holdout``, and the manifests.

    Held-out candidates are looked at first, so that a near-duplicate of a held-out
    photo is the one left out, never the held-out photo itself. Earlier candidates win
    otherwise. Previous photos in both folders are removed first.
    """
    dest = Path(dest)
    candidates = list(sources)
    for candidate in candidates:
        check_not_reserved(candidate.source, candidate.original)
    candidates.sort(key=lambda c: c.key not in holdout)  # stable: held-out first
    for split in ("train", "holdout"):
        folder = dest / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_file() and old.suffix.lower() in IMAGE_SUFFIXES:
                old.unlink()
    offered = {candidate.key for candidate in candidates}
    report = Report(missing_holdout=sorted(set(holdout) - offered))
    for source, original, reason in pre_skipped:
        report.skipped.append({"source": source, "original": original, "reason": reason})
    hashes: list[tuple[int, str]] = []
    names: set[str] = set()
    for candidate in candidates:
        def skip(reason: str, candidate=candidate) -> None:
            report.skipped.append({"source": candidate.source, "original": candidate.original,
                                   "reason": reason})

        reason = skip_reason(candidate.key, skips)
        if reason and candidate.key not in holdout:
            skip(f"hand-skipped: {reason}")
            continue
        try:
            image = candidate.load()
            image.load()
        except Exception as error:  # Pillow raises many types for bad files
            skip(f"unreadable: {type(error).__name__}: {error}")
            continue
        problem = photo_problem(image)
        if problem:
            skip(problem)
            continue
        digest = phash(image)
        twin = next((name for other, name in hashes if hamming(digest, other) <= PHASH_DISTANCE),
                    None)
        if twin:
            skip(f"near-duplicate of {twin}")
            continue
        split = "holdout" if candidate.key in holdout else "train"
        name = candidate.name
        for number in range(2, 1000):
            if name not in names:
                break
            name = f"{candidate.name}-{number}"
        names.add(name)
        file = f"{name}.png" if split == "holdout" else f"{name}.jpg"
        output = _shrink(image, max_side)
        if split == "holdout":
            output.save(dest / split / file)
        else:
            output.save(dest / split / file, quality=JPEG_QUALITY)
        hashes.append((digest, f"{split}/{file}"))
        report.kept.append({
            "file": f"{split}/{file}", "split": split, "source": candidate.source,
            "version": candidate.version, "original": candidate.original,
            "licence": candidate.licence, "width": image.width, "height": image.height,
            "phash": f"{digest:016x}",
        })
    _write_csv(dest / "manifest.csv", MANIFEST_FIELDS, report.kept)
    _write_csv(dest / "skipped.csv", SKIPPED_FIELDS, report.skipped)
    return report


def _write_csv(path: Path, fields, rows) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


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
            print(f"warning: no {package} .deb in {debs} (python -m ml.photos fetch {debs})")


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


# --------------------------------------------------------------------------- sheets


def contact_sheet(paths: list[Path], out: Path, cell: int = 160, columns: int = 10) -> Path:
    """One PNG with a labelled thumbnail of each image, to look at what was kept."""
    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("RGB", (columns * cell, rows * (cell + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            thumb = image.convert("RGB")
            thumb.thumbnail((cell - 4, cell - 4))
        row, column = divmod(index, columns)
        x, y = column * cell, row * (cell + 14)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        draw.text((x + 2, y + cell), Path(path).stem[:26], fill="black")
    sheet.save(out)
    return out


# --------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ml.photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    fetch_parser = sub.add_parser("fetch", help="apt-get download the Debian packages")
    fetch_parser.add_argument("debs", type=Path)
    collect_parser = sub.add_parser("collect", help="gather the offline colour photos")
    collect_parser.add_argument("dest", type=Path)
    collect_parser.add_argument("--debs", type=Path, help="a folder of the .deb files (fetch)")
    collect_parser.add_argument("--skimage-wheel", type=Path,
                                help="a scikit-image wheel (pip download --no-deps scikit-image)")
    collect_parser.add_argument("--max-side", type=int, default=MAX_SIDE,
                                help="shrink photos to this shorter side (default %(default)s)")
    sheet_parser = sub.add_parser("sheet", help="contact sheets of DEST/train and DEST/holdout")
    sheet_parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)

    if args.action == "fetch":
        debs = fetch(args.debs)
        print(f"{len(debs)} packages in {args.debs}")
        return
    if args.action == "sheet":
        for split in ("train", "holdout"):
            paths = sorted((args.dest / split).glob("*.*"))
            for start in range(0, len(paths), 100):
                out = args.dest / f"sheet-{split}-{start // 100}.png"
                print(contact_sheet(paths[start:start + 100], out))
        return
    if not args.debs and not args.skimage_wheel:
        parser.error("no photo source: pass --debs (python -m ml.photos fetch) or --skimage-wheel")
    skipped: list = []
    candidates = list(all_candidates(args.debs, args.skimage_wheel,
                                     args.dest / "licences", skipped))
    report = collect(args.dest, candidates, max_side=args.max_side, pre_skipped=skipped)
    counts = report.counts
    per_source: dict[str, int] = {}
    for row in report.kept:
        per_source[row["source"]] = per_source.get(row["source"], 0) + 1
    print(f"{counts['train']} training photos in {args.dest / 'train'}, "
          f"{counts['holdout']} held out in {args.dest / 'holdout'}, "
          f"{counts['skipped']} files skipped (reasons in {args.dest / 'skipped.csv'}).")
    for source, count in per_source.items():
        print(f"  {source}: {count}")
    for key in report.missing_holdout:
        print(f"warning: held-out photo not found in the sources: {key}")


if __name__ == "__main__":
    main()
