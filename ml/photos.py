"""Content photos that can be had offline, for training and evaluating styles here.

    python -m ml.photos collect DEST [--skimage-wheel WHEEL] [--opencv-dir DIR] [--holdout 8]

Takes the colour photos that scikit-image's wheel and Debian's ``opencv-doc`` package
ship (greyscale images, drawings, charts and tiny images are left out), writes them as
PNG under ``DEST/train/`` and keeps a fixed set of them out of training under
``DEST/holdout/``. On a connected machine, train on COCO instead (``python -m ml.data
fetch-coco``).
"""

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
SKIMAGE_PHOTOS = [
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
    "motorcycle_left.png", "retina.jpg", "rocket.jpg",
]
# Drawings, charts, calibration targets and near-duplicates among opencv-doc's images.
OPENCV_SKIP = {
    "LinuxLogo.jpg", "WindowsLogo.jpg", "opencv-logo.png", "opencv-logo-white.png",
    "alphabet_36.txt", "digits.png", "notes.png", "ml.png", "cards.png", "sudoku.png",
    "gradient.png", "ellipses.jpg", "detect_blob.png", "chessboard.png", "imageTextN.png",
    "imageTextR.png", "text_defocus.jpg", "text_motion.jpg", "mask.png", "aloeGT.png",
    "templ.png", "tmpl.png", "pca_test1.jpg", "starry_night.jpg", "box.png",
    "box_in_scene.png", "blox.jpg", "ela_modified.jpg", "aero3.jpg", "aloeR.jpg",
    "leuvenB.jpg", "rubberwhale2.png", "basketball2.png", "graf3.png", "Blender_Suzanne2.jpg",
    "color.png",
}
# Kept out of training: a spread of subjects (people, animals, objects, scenes).
HOLDOUT = {
    "astronaut.png", "chelsea.png", "coffee.png", "baboon.jpg", "fruits.jpg",
    "building.jpg", "butterfly.jpg", "home.jpg",
}
MIN_SIDE = 200


def is_colour_photo(image: Image.Image) -> bool:
    """A photo worth training on: big enough and with real colour in it."""
    if min(image.size) < MIN_SIDE:
        return False
    rgb = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.float32)
    chroma = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()
    distinct = len(np.unique(rgb.reshape(-1, 3) // 16, axis=0))
    return chroma > 6.0 and distinct > 60


def skimage_photos(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        for name in SKIMAGE_PHOTOS:
            data = archive.read(f"skimage/data/{name}")
            yield name, Image.open(io.BytesIO(data))


def opencv_photos(folder: Path):
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in {".jpg", ".jpeg", ".png"} and path.name not in OPENCV_SKIP:
            yield path.name, Image.open(path)


def collect(dest: Path, sources, holdout: set[str] = HOLDOUT) -> dict[str, int]:
    counts = {"train": 0, "holdout": 0, "skipped": 0}
    for name, image in sources:
        if not is_colour_photo(image):
            counts["skipped"] += 1
            continue
        split = "holdout" if name in holdout else "train"
        target = dest / split / (Path(name).stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(target)
        counts[split] += 1
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ml.photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    collect_parser = sub.add_parser("collect", help="gather the offline colour photos")
    collect_parser.add_argument("dest", type=Path)
    collect_parser.add_argument("--skimage-wheel", type=Path,
                                help="a scikit-image wheel (pip download --no-deps scikit-image)")
    collect_parser.add_argument("--opencv-dir", type=Path, default=OPENCV_DIR)
    args = parser.parse_args(argv)

    sources = []
    if args.skimage_wheel:
        sources.append(skimage_photos(args.skimage_wheel))
    if args.opencv_dir.is_dir():
        sources.append(opencv_photos(args.opencv_dir))
    if not sources:
        parser.error("no photo source: pass --skimage-wheel or install Debian's opencv-doc")
    counts = collect(args.dest, (item for source in sources for item in source))
    print(f"{counts['train']} training photos in {args.dest / 'train'}, "
          f"{counts['holdout']} held out in {args.dest / 'holdout'}, "
          f"{counts['skipped']} images skipped (greyscale, drawings or too small).")


if __name__ == "__main__":
    main()
