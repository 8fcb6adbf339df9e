"""COCO 2014 train images, downloaded and unpacked on a connected machine.

    python -m tools.coco DEST [--url URL] [--keep-zip]

downloads the 13 GiB zip (about 83k photos) and unpacks it into ``DEST/train2014``,
the folder to train on (``manage.py train_style NAME --data DEST/train2014``). A
folder that already holds images is left alone; a failed download leaves nothing
behind, so a rerun starts clean.
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import keras

from ml.data import list_images

COCO_2014_TRAIN_URL = "http://images.cocodataset.org/zips/train2014.zip"


def fetch_coco2014(
    dest: str | os.PathLike, url: str = COCO_2014_TRAIN_URL, keep_zip: bool = False
) -> Path:
    """Download and unpack COCO 2014 train images; returns ``dest/train2014``.

    Skips the download when the folder already holds images, and resumes
    nothing: a partial download is written to ``*.part`` and discarded on
    failure, so a rerun starts clean.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    images_dir = dest / "train2014"
    if images_dir.is_dir() and any(images_dir.iterdir()):
        print(f"{images_dir} already holds images; nothing to do")
        return images_dir
    archive = dest / Path(urllib.parse.urlparse(url).path).name
    if not archive.exists():
        download(url, archive)
    unpack(archive, dest)
    if not keep_zip:
        archive.unlink()
    return images_dir


def download(url: str, target: Path, chunk_bytes: int = 1 << 20) -> Path:
    """Stream ``url`` to ``target`` with a progress bar, via a ``.part`` file."""
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            progress = keras.utils.Progbar(total, unit_name="byte")
            done = 0
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                done += len(chunk)
                progress.update(done)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def unpack(archive: Path, dest: Path) -> None:
    """Extract a zip into ``dest`` with a progress bar (one tick per file)."""
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        progress = keras.utils.Progbar(len(members), unit_name="file")
        for done, member in enumerate(members, start=1):
            zipped.extract(member, dest)
            progress.update(done)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.coco",
                                     description="download COCO 2014 train images")
    parser.add_argument("dest", help="folder to unpack train2014/ into")
    parser.add_argument("--url", default=COCO_2014_TRAIN_URL)
    parser.add_argument("--keep-zip", action="store_true")
    args = parser.parse_args(argv)
    images_dir = fetch_coco2014(args.dest, url=args.url, keep_zip=args.keep_zip)
    print(f"\n{len(list_images(images_dir))} photos in {images_dir}")


if __name__ == "__main__":
    main()
