import csv
import io
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import BASE_DIR
from tools.photos import lists
from tools.photos.cli import main
from tools.photos.curate import (
    PHASH_DISTANCE,
    collect,
    hamming,
    is_colour_photo,
    phash,
    photo_problem,
)
from tools.photos.formats import deb_members, dep5_licence, parse_dep5, read_rcc
from tools.photos.lists import HOLDOUT, SKIP
from tools.photos.reserved import RESERVED_PACKAGES, ReservedSourceError, check_not_reserved
from tools.photos.sources import (
    SOURCES,
    Candidate,
    DebSource,
    all_candidates,
    deb_photos,
    fetch,
    kde_stem,
    rcc_stem,
    skimage_photos,
)


def noisy_colour(size=(300, 260), seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def photo(seed=0, size=(400, 300)):
    """A stand-in photograph: smooth random colour shapes plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    base = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    pixels = base + rng.normal(0, 10, base.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def png_bytes(image, format="PNG"):
    out = io.BytesIO()
    image.save(out, format=format)
    return out.getvalue()


def candidate(name, image, source="test-pkg", original=None, licence="CC0-1.0"):
    original = original or f"/usr/share/test/{name}.png"
    return Candidate(source, original, name, licence, lambda: image, "1.0")


# ----------------------------------------------------------------------------- filters


def test_colour_photos_are_kept_and_grey_flat_or_tiny_images_are_not():
    assert is_colour_photo(noisy_colour())
    assert is_colour_photo(photo())
    assert not is_colour_photo(noisy_colour().convert("L"))
    assert not is_colour_photo(Image.new("RGB", (300, 300), (200, 30, 30)))  # one flat colour
    assert not is_colour_photo(noisy_colour(size=(300, 200)))  # shorter side under 256


def test_photo_problem_names_drawings_cutouts_and_gradients():
    drawing = Image.new("RGB", (400, 300), "white")
    for index, colour in enumerate(["red", "blue", "green", "orange"]):
        drawing.paste(Image.new("RGB", (80, 80), colour), (20 + 90 * index, 100))
    assert "few colours" in photo_problem(drawing)

    cutout = photo().convert("RGBA")
    alpha = np.full((300, 400), 255, np.uint8)
    alpha[:, :100] = 0
    cutout.putalpha(Image.fromarray(alpha))
    assert "transparent" in photo_problem(cutout)

    ramp = np.linspace(0, 255, 400, dtype=np.float32)[None, :, None]
    gradient = np.broadcast_to(ramp * np.array([1.0, 0.5, 0.2]), (300, 400, 3))
    noise = np.random.default_rng(0).integers(0, 3, (300, 400, 3))  # dithered, many colours
    gradient = Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8))
    assert photo_problem(gradient) is not None

    assert "too small" in photo_problem(photo(size=(300, 200)))
    assert photo_problem(photo()) is None


def test_phash_matches_resized_reencoded_and_darker_copies_not_other_photos():
    original = photo(seed=1, size=(640, 480))
    smaller = Image.open(io.BytesIO(png_bytes(original.resize((320, 240)), "JPEG")))
    darker = Image.fromarray((np.asarray(original, np.float32) * 0.55).astype(np.uint8))
    assert hamming(phash(original), phash(smaller)) <= PHASH_DISTANCE
    assert hamming(phash(original), phash(darker)) <= PHASH_DISTANCE
    for seed in range(2, 8):
        assert hamming(phash(original), phash(photo(seed=seed, size=(640, 480)))) > PHASH_DISTANCE


# ----------------------------------------------------------------------------- rcc


def build_rcc(files: dict[str, bytes], version=3, compressed=()):
    """A Qt resource bundle laid out as qtbase's rcc writes it (breadth-first tree)."""
    root: dict = {}
    for path, data in files.items():
        node = root
        *folders, leaf = path.split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = data

    names, name_offsets = bytearray(), {}
    blobs = bytearray()

    def name_offset(name):
        if name not in name_offsets:
            name_offsets[name] = len(names)
            names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return name_offsets[name]

    nodes = [None]  # node 0 is the root
    queue = [(0, "", root)]
    while queue:
        index, path, children = queue.pop(0)
        first = len(nodes)
        items = sorted(children.items())
        nodes.extend([None] * len(items))
        nodes[index] = ("dir", path.rsplit("/", 1)[-1], len(items), first)
        for offset, (name, value) in enumerate(items):
            child_path = f"{path}/{name}" if path else name
            if isinstance(value, dict):
                queue.append((first + offset, child_path, value))
            else:
                flags = 0
                if child_path in compressed:
                    value = struct.pack(">I", len(value)) + zlib.compress(value)
                    flags = 1
                nodes[first + offset] = ("file", name, flags, len(blobs))
                blobs.extend(struct.pack(">I", len(value)) + value)

    tree = bytearray()
    for kind, name, a, b in nodes:
        offset = 0 if kind == "dir" and not name else name_offset(name)
        if kind == "dir":
            tree += struct.pack(">IHII", offset, 0x02, a, b)
        else:
            tree += struct.pack(">IHHHI", offset, a, 0, 0, b)
        if version >= 2:
            tree += struct.pack(">Q", 0)
    header_size = 24 if version >= 3 else 20
    tree_at = header_size
    names_at = tree_at + len(tree)
    blobs_at = names_at + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_at, blobs_at, names_at)
    if version >= 3:
        header += struct.pack(">I", 0)
    return bytes(header + tree + names + blobs)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_rcc_lists_nested_files_and_inflates_compressed_ones(version):
    webp = png_bytes(photo(size=(64, 48)), "WEBP")
    files = {
        "gcompris/src/activities/erase/resource/kitten.webp": webp,
        "gcompris/src/activities/erase/Erase.qml": b"import QtQuick 2.12\n" * 20,
        "gcompris/src/activities/erase/resource/é.txt": b"accented name",
        "top.txt": b"at the root",
    }
    data = build_rcc(files, version, compressed={"gcompris/src/activities/erase/Erase.qml"})
    assert read_rcc(data) == files
    kitten = read_rcc(data)["gcompris/src/activities/erase/resource/kitten.webp"]
    image = Image.open(io.BytesIO(kitten))
    assert image.format == "WEBP" and image.size == (64, 48)


def test_read_rcc_refuses_other_files():
    with pytest.raises(ValueError, match="qres"):
        read_rcc(b"PK\x03\x04 a zip, not a resource bundle")
    with pytest.raises(ValueError, match="version"):
        read_rcc(b"qres" + struct.pack(">IIII", 9, 20, 20, 20))
    whole = build_rcc({"a/b.txt": b"text"})
    with pytest.raises(ValueError, match="corrupt"):
        read_rcc(whole[:30])  # cut short


def test_read_rcc_on_a_real_gcompris_bundle_if_there():
    installed = Path("/usr/share/gcompris-qt/rcc/erase.rcc")
    debs = sorted((BASE_DIR / "var" / "downloads" / "debs").glob("gcompris-qt-data_*.deb"))
    if installed.exists():
        data = installed.read_bytes()
    elif debs and shutil.which("dpkg-deb"):  # left there by `make photos`
        [data] = deb_members(debs[-1], ["usr/share/gcompris-qt/rcc/erase.rcc"]).values()
    else:
        pytest.skip("no gcompris-qt-data here (make photos downloads it)")
    files = read_rcc(data)
    kitten = files["gcompris/src/activities/erase/resource/kitten.webp"]
    assert Image.open(io.BytesIO(kitten)).format == "WEBP"


# ----------------------------------------------------------------------------- licences


COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-3+

Files: src/activities/erase/resource/cat*.jpg
       src/activities/erase/resource/dog.jpg
Copyright: 2021 A Photographer
License: CC-BY-SA-4.0

License: GPL-3+
 The full text.
"""


def test_dep5_licence_last_matching_stanza_wins_and_webp_maps_to_jpeg_names():
    rules = parse_dep5(COPYRIGHT)
    assert rules == [(["*"], "GPL-3+"), (["src/activities/erase/resource/cat*.jpg",
                                          "src/activities/erase/resource/dog.jpg"], "CC-BY-SA-4.0")]
    assert dep5_licence(rules, "src/activities/erase/resource/cat1.webp") == "CC-BY-SA-4.0"
    assert dep5_licence(rules, "src/activities/erase/resource/dog.jpg") == "CC-BY-SA-4.0"
    assert dep5_licence(rules, "src/activities/erase/resource/cow.webp") == "GPL-3+"
    assert dep5_licence([], "anything") is None


# ----------------------------------------------------------------------------- collect


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_collect_keeps_photos_and_skips_non_photos_duplicates_and_hand_skips(tmp_path):
    original = photo(seed=1, size=(800, 600))
    sources = [
        candidate("a", original),
        candidate("a-small", original.resize((400, 300))),  # same photo, smaller
        candidate("b", photo(seed=2).convert("RGBA")),
        candidate("grey", photo(seed=3).convert("L")),
        candidate("logo", Image.new("RGB", (400, 300), (200, 30, 30))),
        candidate("painting", photo(seed=4), original="/usr/share/test/gogh.png"),
        candidate("broken", None),
    ]
    sources[-1].load = lambda: Image.open(io.BytesIO(b"not an image"))
    report = collect(tmp_path, sources, holdout={"test-pkg:/usr/share/test/b.png"},
                     skips={"test-pkg:*/gogh.png": "a painting"}, max_side=256)
    assert report.counts == {"train": 1, "holdout": 1, "skipped": 5}
    train = Image.open(tmp_path / "train" / "a.jpg")
    assert train.format == "JPEG" and train.mode == "RGB" and min(train.size) == 256
    held = Image.open(tmp_path / "holdout" / "b.png")
    assert held.format == "PNG" and held.mode == "RGB"

    manifest = read_csv(tmp_path / "manifest.csv")
    assert [(row["file"], row["split"]) for row in manifest] == [
        ("holdout/b.png", "holdout"), ("train/a.jpg", "train")]
    row = manifest[1]
    assert row["source"] == "test-pkg" and row["original"] == "/usr/share/test/a.png"
    assert row["licence"] == "CC0-1.0" and (row["width"], row["height"]) == ("800", "600")

    reasons = {row["original"].rsplit("/", 1)[-1]: row["reason"]
               for row in read_csv(tmp_path / "skipped.csv")}
    assert reasons["a-small.png"] == "near-duplicate of train/a.jpg"
    assert reasons["grey.png"] == "greyscale or nearly"
    assert reasons["logo.png"].startswith("few colours")
    assert reasons["gogh.png"] == "hand-skipped: a painting"
    assert reasons["broken.png"].startswith("unreadable")


def test_collect_keeps_the_held_out_copy_of_a_duplicate_and_rebuilds_cleanly(tmp_path):
    picture = photo(seed=5, size=(600, 400))
    sources = [candidate("first", picture), candidate("later", picture.resize((450, 300)))]
    collect(tmp_path, sources, holdout={"test-pkg:/usr/share/test/later.png"})
    assert sorted(p.name for p in (tmp_path / "holdout").iterdir()) == ["later.png"]
    assert list((tmp_path / "train").iterdir()) == []

    (tmp_path / "train" / "stale.jpg").write_bytes(b"from an earlier run")
    (tmp_path / "train" / "notes.txt").write_text("not ours")
    report = collect(tmp_path, [candidate("other", photo(seed=6))], holdout=set())
    assert report.counts["train"] == 1
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["notes.txt", "other.jpg"]
    assert list((tmp_path / "holdout").iterdir()) == []


def test_collect_gives_clashing_names_a_number(tmp_path):
    sources = [candidate("same", photo(seed=7), original="/x/same.png"),
               candidate("same", photo(seed=8), original="/y/same.png")]
    collect(tmp_path, sources, holdout=set())
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["same-2.jpg", "same.jpg"]


def test_the_original_eight_stay_held_out_among_twenty_or_more():
    assert len(HOLDOUT) >= 20
    for name in ("astronaut", "chelsea", "coffee"):
        assert f"scikit-image:skimage/data/{name}.png" in HOLDOUT
    for name in ("baboon", "fruits", "building", "butterfly", "home"):
        assert f"opencv-doc:/usr/share/doc/opencv-doc/examples/data/{name}.jpg" in HOLDOUT


# ----------------------------------------------------------------------------- lists


def test_the_hand_made_lists_name_known_sources_and_nothing_reserved():
    known = {*SOURCES, "scikit-image"}
    assert SKIP and HOLDOUT and lists.OPENCV_TUTORIAL_PHOTOS
    for key in (*SKIP, *HOLDOUT):
        source, _, original = key.partition(":")
        assert source in known, key
        check_not_reserved(source, original)
    assert SKIP["opencv-doc:/usr/share/doc/opencv-doc/examples/data/starry_night.jpg"] == (
        "a painting (style material, never content)")
    assert lists.SKIMAGE_PHOTOS["chelsea.png"] == "CC0-1.0 (Stefan van der Walt)"


def test_the_list_files_keep_order_and_refuse_stray_or_repeated_entries(tmp_path):
    skips = tmp_path / "skip.txt"
    skips.write_text("# why\n[a painting]\npkg:*/b*\n\n[a render]\n  pkg:*/a*  \n")
    assert list(lists.read_skips(skips).items()) == [("pkg:*/b*", "a painting"),
                                                      ("pkg:*/a*", "a render")]
    skips.write_text("pkg:*/a*\n[a render]\n")
    with pytest.raises(ValueError, match=r"skip.txt:1: a pattern before any \[reason\]"):
        lists.read_skips(skips)
    skips.write_text("[a render]\npkg:*/a*\n[a painting]\npkg:*/a*\n")
    with pytest.raises(ValueError, match="skip.txt:4: 'pkg:\\*/a\\*' is listed twice"):
        lists.read_skips(skips)

    keys = tmp_path / "holdout.txt"
    keys.write_text("# people\npkg:/a.jpg\nno-colon.jpg\n")
    with pytest.raises(ValueError, match="holdout.txt:3: not a 'package:original path' key"):
        lists.read_keys(keys)

    licences = tmp_path / "skimage-photos.txt"
    licences.write_text("a.png\tCC0-1.0 (Someone)\nb.png\n")
    with pytest.raises(ValueError, match="skimage-photos.txt:2: a file name without"):
        lists.read_licences(licences)


# ----------------------------------------------------------------------------- reserved


@pytest.mark.parametrize("source, original", [
    ("mate-backgrounds", "/usr/share/backgrounds/mate/nature/Storm.jpg"),
    ("some-package", "/usr/share/backgrounds/mate/nature/Storm.jpg"),
    ("some-package", "/work/var/downloads/debs/mate-backgrounds_1.26.0-1_all.deb"),
    ("scikit-learn", "sklearn/datasets/images/china.jpg"),
    ("wheel", "scikit_learn-1.5.0.whl:sklearn/datasets/images/flower.jpg"),
    ("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
])
def test_reserved_sources_are_refused(source, original):
    with pytest.raises(ReservedSourceError):
        check_not_reserved(source, original)


def test_collect_refuses_a_reserved_photo_before_writing_anything(tmp_path):
    sources = [candidate("fine", photo(seed=1)),
               candidate("storm", photo(seed=2), source="mate-backgrounds",
                         original="/usr/share/backgrounds/mate/nature/Storm.jpg")]
    with pytest.raises(ReservedSourceError):
        collect(tmp_path, sources, holdout=set())
    assert not (tmp_path / "train").exists()


def test_reserved_wheels_debs_and_packages_are_refused(tmp_path):
    sklearn_wheel = tmp_path / "scikit_learn-1.5.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(sklearn_wheel, "w") as archive:
        archive.writestr("sklearn/datasets/images/china.jpg", png_bytes(photo(), "JPEG"))
    with pytest.raises(ReservedSourceError):
        list(skimage_photos(sklearn_wheel))

    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "mate-backgrounds_1.26.0-1_all.deb").write_bytes(b"!<arch>\n")
    with pytest.raises(ReservedSourceError):
        list(all_candidates(debs, None, None, []))
    with pytest.raises(ReservedSourceError):
        fetch(debs, ["gnome-backgrounds", "mate-backgrounds"])
    assert not any(name in SOURCES for name in RESERVED_PACKAGES)


# ----------------------------------------------------------------------------- sources


def fake_wheel(path, images: dict[str, Image.Image]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, image in images.items():
            archive.writestr(f"skimage/data/{name}", png_bytes(image))
        archive.writestr("skimage/data/camera.png", png_bytes(photo().convert("L")))
    return path


def test_skimage_photos_reads_the_listed_photos_with_their_licences(tmp_path):
    wheel = fake_wheel(tmp_path / "scikit_image-0.26.0-cp311-cp311-linux_x86_64.whl",
                       {"chelsea.png": photo(seed=1), "rocket.jpg": photo(seed=2)})
    found = {c.name: c for c in skimage_photos(wheel)}
    assert sorted(found) == ["chelsea", "rocket"]  # camera.png is not in the list
    assert found["chelsea"].key == "scikit-image:skimage/data/chelsea.png"
    assert found["chelsea"].licence.startswith("CC0")
    assert found["chelsea"].version == "0.26.0"
    assert found["rocket"].load().size == (400, 300)


needs_dpkg = pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")


def build_deb(folder: Path, package: str, files: dict[str, bytes]) -> Path:
    root = folder / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test package\n")
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    deb = folder / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


@needs_dpkg
def test_deb_photos_reads_files_and_rcc_bundles_with_licences(tmp_path):
    rcc = build_rcc({"gcompris/src/activities/erase/resource/cat1.webp":
                     png_bytes(photo(seed=3), "WEBP"),
                     "gcompris/src/activities/erase/Erase.qml": b"qml"})
    deb = build_deb(tmp_path, "demo-data", {
        "usr/share/demo/rcc/erase.rcc": rcc,
        "usr/share/demo/wallpapers/lake.jpg": png_bytes(photo(seed=4), "JPEG"),
        "usr/share/demo/other/ignored.jpg": png_bytes(photo(seed=5), "JPEG"),
        "usr/share/doc/demo-data/copyright": COPYRIGHT.encode(),
    })
    bundles = DebSource(include=("usr/share/demo/rcc/*.rcc",), tag="demo", rcc=True,
                        licence_path=lambda path: path.partition(":")[2].removeprefix("gcompris/"),
                        stem=rcc_stem)
    [cat] = deb_photos(deb, bundles, tmp_path / "licences")
    assert cat.source == "demo-data" and cat.version == "1.0-1"
    assert cat.original == ("/usr/share/demo/rcc/erase.rcc:"
                            "gcompris/src/activities/erase/resource/cat1.webp")
    assert cat.name == "demo-erase-cat1"
    assert cat.licence == "CC-BY-SA-4.0"
    assert cat.load().size == (400, 300)
    assert (tmp_path / "licences" / "demo-data.copyright").read_text() == COPYRIGHT

    files = DebSource(include=("usr/share/demo/wallpapers/*",), tag="demo",
                      licences=(("*/lake.jpg", "CC0-1.0 (README)"),))
    [lake] = deb_photos(deb, files)
    assert (lake.original, lake.name, lake.licence) == (
        "/usr/share/demo/wallpapers/lake.jpg", "demo-lake", "CC0-1.0 (README)")


@needs_dpkg
def test_kde_wallpapers_give_one_photo_per_folder_the_largest(tmp_path):
    picture = photo(seed=6, size=(640, 400))
    folder = "usr/share/wallpapers/Lake/contents"
    deb = build_deb(tmp_path, "kde-walls", {
        f"{folder}/images/640x400.jpg": png_bytes(picture, "JPEG"),
        f"{folder}/images/320x200.jpg": png_bytes(picture.resize((320, 200)), "JPEG"),
        f"{folder}/images/300x600.jpg": png_bytes(picture.resize((300, 600)), "JPEG"),
        "usr/share/wallpapers/Lake/metadata.json": b'{"KPlugin": {"License": "CC-BY-4.0"}}',
    })
    skipped = []
    source = DebSource(include=("usr/share/wallpapers/*/contents/images/*",), tag="kde",
                       plasma=True, stem=kde_stem)
    [lake] = deb_photos(deb, source, skipped=skipped)
    assert lake.original.endswith("/images/640x400.jpg") and lake.name == "kde-Lake"
    assert lake.licence.startswith("CC-BY-4.0 (metadata.json)")
    assert sorted(row[1].rsplit("/", 1)[-1] for row in skipped) == ["300x600.jpg", "320x200.jpg"]


def test_command_line_collects_from_a_wheel_and_writes_the_manifest(tmp_path, capsys):
    wheel = fake_wheel(tmp_path / "scikit_image-0.26.0-cp311-cp311-linux_x86_64.whl", {
        "chelsea.png": photo(seed=1), "rocket.jpg": photo(seed=2),
        "coffee.png": photo(seed=3).convert("L")})
    main(["collect", str(tmp_path / "out"), "--skimage-wheel", str(wheel)])
    printed = capsys.readouterr().out
    assert "1 training photos" in printed and "1 held out" in printed
    assert (tmp_path / "out" / "holdout" / "chelsea.png").is_file()
    assert (tmp_path / "out" / "train" / "rocket.jpg").is_file()
    assert {row["file"] for row in read_csv(tmp_path / "out" / "manifest.csv")} == {
        "holdout/chelsea.png", "train/rocket.jpg"}
    licences = (tmp_path / "out" / "licences" / "scikit-image.txt").read_text()
    assert "skimage/data/chelsea.png: CC0-1.0" in licences

    main(["sheet", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "sheet-train-0.png").width > 0
