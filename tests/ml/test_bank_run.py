"""The shipped bank's long run (``ml.bank_run``): its plan, its score, the best snapshots,
and a tiny run that resumes from its folder on another machine and stops on time."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml import bank_run, bank_ship
from ml.bank_run import BestSnapshots, load_plan, style_score
from tests.helpers import noise_photos

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --------------------------------------------------------------------------- the plan


def test_the_shipped_plan_lists_every_painting_with_its_source_licence_and_chinese_name():
    plan = load_plan(BASE_DIR / "training" / "bank")
    assert len(plan.styles) >= 12
    assert [style.slot for style in plan.styles] == list(range(1, len(plan.styles) + 1))
    for style in plan.styles:
        meta = json.loads((style.folder / "style.json").read_text())
        assert style.painting.is_file() and style.painting.stat().st_size < 2_000_000
        assert meta["slug"] == style.slug and meta["source"] and meta["licence"]
        assert meta["name_zh"] and meta["description_zh"]  # shown to Chinese readers
        assert style.style_scale >= 0


def test_the_plans_checkpoint_fits_in_the_repository():
    """Weights and Adam's two moments of the plan's network stay under 10 MB."""
    from ml.config import TrainConfig
    from ml.trainer import build_transform_net

    plan = load_plan(BASE_DIR / "training" / "bank")
    settings = dict(plan.train)
    config = TrainConfig.from_preset(settings.pop("preset", None), **settings)
    net = build_transform_net(config, num_styles=len(plan.styles) + 1)
    assert 3 * 4 * net.count_params() < 10_000_000


def test_a_plan_with_a_missing_painting_is_refused_naming_it(tmp_path):
    (tmp_path / "styles" / "gone").mkdir(parents=True)
    (tmp_path / "styles" / "gone" / "style.json").write_text('{"painting": "painting.png"}')
    (tmp_path / "plan.json").write_text('{"styles": ["gone"]}')
    with pytest.raises(ValueError, match="painting of gone"):
        load_plan(tmp_path)


# --------------------------------------------------------------------------- the score


def scores(ratio, luminance, edges):
    return {"style_distance_ratio": ratio, "luminance_correlation": luminance,
            "edge_correlation": edges}


def test_the_score_prefers_keeping_the_photo_to_painting_it_away():
    peer = scores(0.07, 0.72, 0.65)
    wiped_out = style_score(scores(0.05, 0.40, 0.50), peer)
    kept = style_score(scores(0.065, 0.75, 0.70), peer)
    assert kept < wiped_out
    # Above every floor, only the style ratio counts, in units of the peer's.
    assert kept == pytest.approx(0.065 / 0.07)
    assert style_score(scores(0.06, 0.9, 0.9)) == pytest.approx(0.6)  # no peer: units of 0.1


def checked_against_a_shipped_model(**extra):
    """ship_check of a style that beats its shipped model and keeps the photo, with
    ``extra`` scores (dark spots, droplets) added."""
    from ml.bank_ship import ship_check

    return ship_check("red", {**scores(0.1, 0.9, 0.9), **extra}, scores(0.2, 0.9, 0.9),
                      "model", None)


def test_black_blobs_count_as_dark_spots_and_cost_score():
    from ml.bank_run import dark_spots

    photo = np.full((100, 100, 3), 140, np.uint8)
    photo[:, :10] = 10  # the photo's own dark edge is no spot
    result = photo.copy()
    result[40:50, 40:50] = 0  # a 10x10 black blob: 1 % of the picture
    assert dark_spots([photo], [photo]) == 0.0
    assert dark_spots([photo], [result]) == pytest.approx(1.0)
    strokes = photo.copy()
    strokes[20:80, 30:33] = 0  # a dark stroke 3 px wide and dots are no blob
    strokes[60:64:2, 60:64:2] = 0
    assert dark_spots([photo], [strokes]) == 0.0
    assert dark_spots([photo, photo], [result, strokes]) == pytest.approx(0.5)
    clean = scores(0.1, 0.9, 0.9)
    assert style_score({**clean, "dark_spots": 1.0}) == pytest.approx(style_score(clean) + 1.0)


def test_a_shade_of_the_photo_painted_black_is_no_dark_spot_but_a_flat_area_is():
    """A dark painting may deepen what the photo already has darker than its
    surroundings (a green letter on white, a rind, a stripe) to black; the same black
    patch on a flat mid-grey photo, or on the light ground beside the letter, is a blob."""
    from ml.bank_run import SHADE_SHARE, dark_spots

    photo = np.full((100, 100, 3), 200, np.uint8)
    photo[40:60, 40:60] = int(200 * SHADE_SHARE) - 40  # a letter: mid-tone, yet darker
    assert 100 < photo[50, 50, 0] < 200  # over LIGHT_PHOTO: the old rule counted it
    letter_black = photo.copy()
    letter_black[40:60, 40:60] = 0
    assert dark_spots([photo], [letter_black]) == 0.0
    ground_black = photo.copy()
    ground_black[10:20, 10:20] = 0  # 10x10 on the light ground: 1 %
    assert dark_spots([photo], [ground_black]) == pytest.approx(1.0)
    flat = np.full((100, 100, 3), 120, np.uint8)  # as dark as the letter, but flat
    assert dark_spots([flat], [np.where(letter_black == 0, 0, flat)]) == pytest.approx(4.0)


def test_box_mean_averages_each_pixels_square_repeating_the_edges():
    from ml.bank_run import box_mean

    values = np.arange(30, dtype=float).reshape(5, 6)
    means = box_mean(values, 3)
    assert means.shape == values.shape
    assert means[2, 3] == pytest.approx(values[1:4, 2:5].mean())
    padded = np.pad(values, 1, mode="edge")
    assert means[0, 0] == pytest.approx(padded[0:3, 0:3].mean())
    assert means[4, 5] == pytest.approx(padded[4:7, 5:8].mean())


def test_a_style_with_black_blobs_is_not_shipped_however_well_it_paints(tmp_path):
    from ml.bank_ship import _score

    clean = checked_against_a_shipped_model(dark_spots=0.0)
    blobs = checked_against_a_shipped_model(dark_spots=0.5)
    assert clean.problems == []
    assert blobs.problems == ["dark spots 0.50 % > 0.1 %"]

    # The shipping check counts them on the held-out photos it paints.
    from PIL import Image

    from ml.losses import build_loss_network
    from ml.quality import QUALITY_LAYERS

    paths = []
    for index, level in enumerate((120, 200)):
        paths.append(tmp_path / f"photo-{index}.png")
        Image.fromarray(np.full((48, 64, 3), level, np.uint8)).save(paths[-1])
    painting = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(
        painting)
    network = build_loss_network("vgg16", None, layers=list(QUALITY_LAYERS))

    def blob(photo):
        result = np.array(photo, np.float32)
        result[:40, :40] = 0.0
        return result

    assert _score(lambda photo: photo, paths, painting, network)["dark_spots"] == 0.0
    assert _score(blob, paths, painting, network)["dark_spots"] > 0.1


def test_best_snapshots_keep_each_styles_best_step_and_only_those_weights(tmp_path):
    best = BestSnapshots(tmp_path / "best")

    def save(path):
        Path(path).write_bytes(b"weights")

    assert best.offer(2, {"a": {"score": 3.0}, "b": {"score": 2.0}}, save) == ["a", "b"]
    assert best.offer(4, {"a": {"score": 1.0}, "b": {"score": 5.0}}, save) == ["a"]
    assert best.offer(6, {"a": {"score": 9.0}, "b": {"score": 9.0}}, save) == []
    assert {slug: entry["step"] for slug, entry in best.best.items()} == {"a": 4, "b": 2}
    assert sorted(p.name for p in (tmp_path / "best").glob("*.h5")) == [
        "step-00000002.weights.h5", "step-00000004.weights.h5"]
    assert best.offer(8, {"a": {"score": 0.5}, "b": {"score": 0.5}}, save) == ["a", "b"]
    assert [p.name for p in (tmp_path / "best").glob("*.h5")] == ["step-00000008.weights.h5"]
    # Read back by the next session.
    assert BestSnapshots(tmp_path / "best").best["b"]["step"] == 8


def test_best_snapshots_forget_what_was_scored_under_another_measure(tmp_path):
    best = BestSnapshots(tmp_path / "best")

    def save(path):
        Path(path).write_bytes(b"weights")

    measures = {"a": {"painting": "1", "edge_margin": 16},
                "b": {"painting": "2", "edge_margin": 16}}
    best.offer(2, {"a": {"score": 1.0}, "b": {"score": 1.0}}, save, measures=measures)
    assert best.forget_stale(measures) == []
    changed = {**measures, "a": {"painting": "3", "edge_margin": 16}}
    assert best.forget_stale(changed) == ["a"]
    assert set(BestSnapshots(tmp_path / "best").best) == {"b"}  # written back
    # A worse score under the new measure is now a's best; b's stands.
    scored = {"a": {"score": 5.0}, "b": {"score": 5.0}}
    assert best.offer(4, scored, save, measures=changed) == ["a"]
    assert best.best["a"]["measure"] == changed["a"] and best.best["b"]["step"] == 2
    # An entry kept before measures were recorded is stale too.
    best.best["b"].pop("measure")
    assert best.forget_stale(changed) == ["b"]


def test_the_measure_names_the_painting_the_edge_margin_and_the_spot_rules(tmp_path):
    from ml.config import TrainConfig

    painting = tmp_path / "painting.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(painting)
    style = bank_run.BankStyle(1, "a", "A", painting, 1.0, tmp_path)
    config = TrainConfig(painting=str(painting), data_dir="d", out_dir="o")
    first = bank_run.measure_of(style, config)
    assert first["edge_margin"] == config.edge_margin
    assert first["spot_rules"] == bank_run.SPOT_RULES
    assert bank_run.measure_of(style, config.replace(edge_margin=0)) != first
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(painting)  # a cropped scan, say
    assert bank_run.measure_of(style, config)["painting"] != first["painting"]


# --------------------------------------------------------------------------- a tiny run


def write_images(folder: Path, count: int, size: int, seed: int) -> Path:
    return noise_photos(folder, count, size=(size, size), grow=(8, 0), seed=seed,
                        name="photo-{}")


@pytest.fixture
def tiny_run(tmp_path):
    """A run folder like training/bank/ with two paintings and a tiny network."""
    run_dir = tmp_path / "bank"
    for width, slug, colour in ((4, "red", (200, 40, 30)), (5, "blue", (30, 40, 200))):
        folder = run_dir / "styles" / slug
        folder.mkdir(parents=True)
        stripes = (np.indices((48, 48)).sum(axis=0) // width % 2)[..., None]
        pixels = np.clip(stripes * np.array(colour) + 20, 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "painting.png")
        (folder / "style.json").write_text(json.dumps({
            "name": slug, "slug": slug, "painting": "painting.png",
            "training": {"style_scale": 1.0}}))
    (run_dir / "plan.json").write_text(json.dumps({
        "bank": "tiny", "styles": ["red", "blue"], "score_every": 2,
        "train": {"preset": "fast", "width": 0.125, "num_residual_blocks": 1, "size": 16,
                  "batch": 2, "steps": 100, "checkpoint_every": 2, "sample_every": 1000,
                  "precision": "float32", "lr": 0.01}}))
    photos = write_images(tmp_path / "photos", 4, 40, seed=3)
    holdout = write_images(tmp_path / "holdout", 2, 32, seed=4)
    return run_dir, photos, holdout


def run(run_dir, photos, holdout, *extra):
    bank_run.main(["--run-dir", str(run_dir), "--photos", str(photos), "--holdout", str(holdout),
                   "--loss-weights", "random", *extra])


@pytest.mark.slow
def test_patches_keep_the_areas_a_square_fits_in_and_drop_lines_and_dots():
    from ml.bank_run import patches

    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = rng.random((23, 31)) < 0.8
        for side in (1, 2, 3, 5):
            expected = np.zeros_like(mask)  # by brute force: every square inside the mask
            for i in range(mask.shape[0] - side + 1):
                for j in range(mask.shape[1] - side + 1):
                    if mask[i:i + side, j:j + side].all():
                        expected[i:i + side, j:j + side] = True
            np.testing.assert_array_equal(patches(mask, side), expected)
    assert not patches(np.ones((4, 4), bool), 5).any()


def test_droplets_count_a_spot_far_stronger_than_its_map_and_cost_score():
    from ml.bank_run import DROPLET_Z, droplets

    rng = np.random.default_rng(1)
    busy = rng.normal(0.0, 3.0, (100, 100, 4)).astype(np.float32)
    busy[::5] += 15.0  # strong detail over a fifth of the map is no droplet
    coarse = rng.normal(0.0, 3.0, (50, 50, 8)).astype(np.float32)
    assert droplets([busy]) == 0.0 and droplets([coarse, busy]) == 0.0
    spotted = busy.copy()
    spotted[50:52, 50:52, 2] += 40.0 * DROPLET_Z  # 4 of 10,000 pixels, one channel
    assert droplets([spotted]) == pytest.approx(0.04)
    # A coarser map's droplet covers the pixels it stands for at the finest size.
    coarse[10, 20, 5] += 40.0 * DROPLET_Z
    assert droplets([coarse, spotted]) == pytest.approx(0.08)
    clean = scores(0.1, 0.9, 0.9)
    assert style_score({**clean, "droplets": 0.1}) == pytest.approx(style_score(clean) + 1.0)


def test_a_style_with_droplets_is_not_shipped_and_the_bank_net_reports_them(tmp_path):
    from ml.bank_run import paint
    from ml.model import TransformNet

    drops = checked_against_a_shipped_model(droplets=0.05)
    assert drops.problems == ["droplets 0.050 % > 0.01 %"]
    assert checked_against_a_shipped_model(droplets=0.0).problems == []

    # paint() gives the picture the net paints and the droplets of its last inner map:
    # none for a flat photo, some for a bright dot on it, which a fresh net carries into
    # its maps as one spot far above the flat rest.
    import keras

    keras.utils.set_random_seed(3)
    net = TransformNet(width=0.25, num_residual_blocks=1, num_styles=3)
    net.build((None, None, None, 3))
    photo = np.full((128, 128, 3), 90.0, np.float32)
    weights = np.array([[0.0, 1.0, 0.0]], np.float32)
    result, share = paint(net, photo, weights)
    assert result.dtype == np.uint8
    np.testing.assert_allclose(
        result, np.clip(np.round(np.asarray(net(photo[None], weights))[0]), 0, 255), atol=1)
    assert share == 0.0
    photo[64, 64] = 255.0
    assert paint(net, photo, weights)[1] > 0.0


def test_the_run_resumes_from_its_folder_on_another_machine(tiny_run, tmp_path, capsys):
    run_dir, photos, holdout = tiny_run
    run(run_dir, photos, holdout, "--steps", "4")
    first = json.loads((run_dir / "run" / "checkpoints" / "latest.json").read_text())
    assert first["step"] == 4

    # Only the tracked files travel (a fresh clone): no logs, samples or final model.
    moved = tmp_path / "clone" / "bank"
    shutil.copytree(run_dir, moved, ignore=shutil.ignore_patterns(
        "logs", "samples", "transform_net.keras"))
    run(moved, photos, holdout, "--steps", "6")
    out = capsys.readouterr().out
    assert "step 6 (2 this run" in out
    state = json.loads((moved / "run" / "checkpoints" / "latest.json").read_text())
    assert state["step"] == 6
    records = [json.loads(line) for line in
               (moved / "run" / "scores.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [2, 4, 6]
    assert set(records[-1]["styles"]) == {"red", "blue"}
    # Each style's best is the step with its lowest score, whichever that was, and the
    # snapshot it names loads into the bank's network.
    best = json.loads((moved / "run" / "best" / "best.json").read_text())
    for slug in ("red", "blue"):
        lowest = min(records, key=lambda record: record["styles"][slug]["score"])
        assert best[slug]["step"] == lowest["step"]
        assert (moved / "run" / "best" / f"step-{lowest['step']:08d}.weights.h5").is_file()
    # The whole bank's best is the step with the lowest mean score: the one to ship.
    lowest_mean = min(records, key=lambda record: np.mean(
        [scores["score"] for scores in record["styles"].values()]))
    assert best[bank_run.WHOLE_BANK]["step"] == lowest_mean["step"]
    assert (moved / "run" / "samples" / "heldout-step-00000006.jpg").is_file()


@pytest.mark.slow
def test_a_snapshot_loads_with_the_norms_it_was_scored_with_after_the_plan_moves_on(tiny_run):
    from ml.bank_ship import load_snapshot

    run_dir, photos, holdout = tiny_run
    plan_file = run_dir / "plan.json"
    plan = json.loads(plan_file.read_text())
    plan["train"]["norm_clip_z"] = 6.0
    plan_file.write_text(json.dumps(plan))
    run(run_dir, photos, holdout, "--steps", "2")
    best = json.loads((run_dir / "run" / "best" / "best.json").read_text())
    assert best["red"]["net"] == {"norm_clip_z": 6.0}

    del plan["train"]["norm_clip_z"]  # the plan moves on; the snapshot keeps its norms
    plan_file.write_text(json.dumps(plan))
    step, net, _ = load_snapshot(load_plan(run_dir), None)
    assert step == 2 and net.norm_clip_z == 6.0
    # An entry that records nothing was scored with the plain norms.
    snapshots = BestSnapshots(run_dir / "run" / "best")
    for entry in snapshots.best.values():
        entry.pop("net")
    bank_run.write_json(snapshots.folder / bank_run.BEST_FILE, snapshots.best)
    plan["train"]["norm_clip_z"] = 3.0
    plan_file.write_text(json.dumps(plan))
    assert load_snapshot(load_plan(run_dir), 2)[1].norm_clip_z is None


@pytest.mark.slow
def test_a_changed_painting_starts_its_styles_best_afresh(tiny_run, capsys):
    run_dir, photos, holdout = tiny_run
    run(run_dir, photos, holdout, "--steps", "2")
    painting = run_dir / "styles" / "red" / "painting.png"
    with Image.open(painting) as image:
        image.crop((2, 2, 46, 46)).save(painting)  # its frame cropped off
    capsys.readouterr()
    run(run_dir, photos, holdout, "--steps", "4")
    assert "forgotten" in capsys.readouterr().out
    best = json.loads((run_dir / "run" / "best" / "best.json").read_text())
    assert best["red"]["step"] == 4 and best[bank_run.WHOLE_BANK]["step"] == 4
    records = [json.loads(line) for line in
               (run_dir / "run" / "scores.jsonl").read_text().splitlines()]
    lowest = min(records, key=lambda record: record["styles"]["blue"]["score"])
    assert best["blue"]["step"] == lowest["step"]  # blue's painting did not change


@pytest.mark.slow
def test_the_run_stops_at_max_seconds_with_a_checkpoint_and_a_score(tiny_run):
    run_dir, photos, holdout = tiny_run
    run(run_dir, photos, holdout, "--max-seconds", "0.001")
    state = json.loads((run_dir / "run" / "checkpoints" / "latest.json").read_text())
    assert 1 <= state["step"] < 100
    records = (run_dir / "run" / "scores.jsonl").read_text().splitlines()
    assert json.loads(records[-1])["step"] == state["step"]
    assert json.loads(records[-1])["identity_levels"] >= 0.0


def test_identity_levels_say_how_far_strength_0_is_from_the_photo(tmp_path):
    from PIL import Image

    from ml.bank_run import identity_levels

    path = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 40, 3), 100, np.uint8)).save(path)

    class Net:  # stands for a bank: strength 0 is the identity slot's row
        num_styles = 3

        def __init__(self, shift):
            self.shift = shift

        def __call__(self, photos, weights):
            assert np.asarray(weights).tolist() == [[1.0, 0.0, 0.0]]
            return photos + self.shift

    assert identity_levels(Net(0.0), [path], slot=2) == 0.0
    assert identity_levels(Net(12.0), [path], slot=2) == 12.0


# --------------------------------------------------------------------------- shipping


def ship(run_dir, serving, holdout, *extra):
    from ml import bank_ship

    return bank_ship.main(["--run-dir", str(run_dir), "--serving-dir", str(serving),
                           "--holdout", str(holdout), "--loss-weights", "random", *extra])


@pytest.mark.slow
def test_shipping_exports_the_best_snapshot_and_retires_the_model_it_replaces(
        tiny_run, tmp_path, capsys):
    import keras

    from ml.model import TransformNet
    from ml.shipped import shipped_styles
    from tests.model_fixtures import export_tiny_bank

    run_dir, photos, holdout = tiny_run
    run(run_dir, photos, holdout, "--steps", "4")
    serving = tmp_path / "serving"
    # Today's network of the same slug as the bank's first style: a lone style's own
    # bank (the identity and "red") under another model name.
    export_tiny_bank(serving / "models", name="red_model", num_styles=2, slugs=["red"])
    (serving / "styles" / "red_model" / "red").mkdir(parents=True)
    shutil.copy(run_dir / "styles" / "red" / "painting.png",
                serving / "styles" / "red_model" / "red")
    (serving / "styles" / "red_model" / "red" / "style.json").write_text(json.dumps(
        {"name": "Red", "slug": "red", "painting": "painting.png"}))
    (serving / "STYLES.md").write_text("# Shipped styles\n")
    assert [(s.model, s.slug) for s in shipped_styles(serving)] == [("red_model", "red")]

    # Four steps of a tiny net keep no photo: refused, nothing written.
    assert ship(run_dir, serving, holdout) == 1
    assert "Not shipped" in capsys.readouterr().out
    assert not (serving / "models" / "tiny").exists()
    assert (serving / "models" / "red_model").is_dir()

    # The plan moves on after the run: the shipped version records what it trained with.
    plan = json.loads((run_dir / "plan.json").read_text())
    (run_dir / "plan.json").write_text(json.dumps({**plan, "train": {**plan["train"],
                                                                      "lr": 0.5}}))
    red_json = run_dir / "styles" / "red" / "style.json"
    red_json.write_text(json.dumps({**json.loads(red_json.read_text()),
                                    "training": {"style_scale": 7.0}}))
    assert ship(run_dir, serving, holdout, "--force") == 0
    best = json.loads((run_dir / "run" / "best" / "best.json").read_text())
    styles = shipped_styles(serving)
    assert styles[0].meta["training"]["style_scale"] == 1.0
    assert styles[0].meta["training"]["lr"] == 0.01
    assert styles[0].meta["training"]["width"] == 0.125  # the net's shape, resolved
    assert styles[0].meta["training"]["where"] == bank_ship.TRAINED_WHERE
    assert '"lr": 0.01' in (serving / "STYLES.md").read_text()
    assert [(s.model, s.slot, s.slug) for s in styles] == [("tiny", 1, "red"), ("tiny", 2, "blue")]
    assert not (serving / "models" / "red_model").exists()
    assert not (serving / "styles" / "red_model").exists()
    meta = styles[0].meta
    assert meta["training"]["steps_done"] == best[bank_run.WHOLE_BANK]["step"]
    assert meta["metrics"]["heldout"]["quality"]["luminance_correlation"] is not None
    assert (styles[0].meta_file.parent / "sample.jpg").is_file()
    assert 'name: "tiny"' in (serving / "models.config").read_text()
    assert "red_model" not in (serving / "models.config").read_text()
    record = (serving / "STYLES.md").read_text()
    assert "## Bank `tiny`, version 1" in record and "red_model" in record
    # The pictures beside serving/: a contact sheet per style, the README's gallery.
    for slug in ("red", "blue"):
        with Image.open(tmp_path / "docs" / f"contact-sheet-{slug}.jpg") as sheet:
            columns = min(len(list(holdout.iterdir())), bank_ship.SHEET_PHOTOS)
            assert sheet.size == (columns * 256, 2 * 256)
    with Image.open(tmp_path / "docs" / "gallery.jpg") as gallery:
        assert gallery.width == 3 * 192  # the photo column, then both styles
        assert gallery.height > 192  # the paintings' row, then the photos' rows
    # The exported version paints with the snapshot's weights.
    net = keras.saving.load_model(styles[0].version_dir / "transform_net.keras")
    snapshot = TransformNet.from_config(net.get_config())
    snapshot.build((None, None, None, 3))
    snapshot.load_weights(run_dir / "run" / "best" /
                          f"step-{best[bank_run.WHOLE_BANK]['step']:08d}.weights.h5")
    photo = np.full((1, 24, 24, 3), 120, np.float32)
    weights = np.eye(3, dtype=np.float32)[[1]]
    np.testing.assert_allclose(np.asarray(net(photo, weights)),
                               np.asarray(snapshot(photo, weights)), atol=1e-4)
    shipped = styles[0].load_stylize()(np.full((24, 24, 3), 120, np.uint8))
    assert shipped.shape == (24, 24, 3)


def test_shipping_retires_only_networks_whose_every_style_the_bank_paints(capsys):
    from types import SimpleNamespace as Ns

    from ml.bank_ship import retired_networks

    plan = Ns(bank="paintings", styles=[Ns(slug="starry"), Ns(slug="wave")])
    shipped = [Ns(model="paintings", slug="starry"), Ns(model="starry_own", slug="starry"),
               Ns(model="duo", slug="wave"), Ns(model="duo", slug="poppies"),
               Ns(model="other", slug="irises")]
    assert retired_networks(shipped, plan) == ["starry_own"]
    assert "Keeping duo: it also paints poppies" in capsys.readouterr().out
