import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.data import list_images
from tests.helpers import BASE_DIR
from tools.coco import fetch_coco2014, main


def save_photo(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_fetch_coco2014_downloads_and_unpacks_a_zip(tmp_path):
    archive = tmp_path / "served" / "train2014.zip"
    archive.parent.mkdir()
    photo = save_photo(tmp_path / "src.jpg")
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(photo, "train2014/COCO_train2014_000000000009.jpg")
        zipped.write(photo, "train2014/COCO_train2014_000000000025.jpg")

    dest = tmp_path / "coco"
    images_dir = fetch_coco2014(dest, url=archive.as_uri())

    assert images_dir == dest / "train2014"
    assert len(list_images(images_dir)) == 2
    assert not (dest / "train2014.zip").exists()
    assert not list(dest.glob("*.part"))
    # A second call finds the images and downloads nothing.
    archive.unlink()
    assert fetch_coco2014(dest, url=archive.as_uri()) == images_dir


def test_fetch_coco_command_line(tmp_path, capsys):
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(save_photo(tmp_path / "src.jpg"), "train2014/a.jpg")
    main([str(tmp_path / "coco"), "--url", archive.as_uri(), "--keep-zip"])
    assert "1 photos in" in capsys.readouterr().out
    assert (tmp_path / "coco" / "train2014" / "a.jpg").is_file()
    assert (tmp_path / "coco" / "train2014.zip").is_file()


def test_the_readme_command_is_the_module_run(tmp_path):
    # `python -m tools.coco DEST` as the README writes it (here with a local zip).
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(save_photo(tmp_path / "src.jpg"), "train2014/a.jpg")
    done = subprocess.run(
        [sys.executable, "-m", "tools.coco", str(tmp_path / "coco"), "--url", archive.as_uri()],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 photos in" in done.stdout


def test_fetch_coco2014_leaves_no_partial_file_when_the_download_fails(tmp_path):
    dest = tmp_path / "coco"
    with pytest.raises(OSError):
        fetch_coco2014(dest, url=(tmp_path / "missing.zip").as_uri())
    assert not list(dest.glob("*"))
