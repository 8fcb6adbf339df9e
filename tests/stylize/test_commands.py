import io
import re
import subprocess
import sys

import numpy as np
import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from PIL import Image

from stylize.backends import get_backend
from stylize.imaging.loading import load_photo
from stylize.services.stylizing import photo_stylize
from tests.factories import BankStyleFactory, StyleFactory
from tests.helpers import BASE_DIR, worker_env

pytestmark = pytest.mark.django_db


def run_ensure_accounts():
    out = io.StringIO()
    call_command("ensure_accounts", stdout=out)
    return dict(re.findall(r"(\w+) / (\S+)", out.getvalue()))


def test_ensure_accounts_prints_logins_that_work(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    logins = run_ensure_accounts()
    assert set(logins) == {"demo", "admin"}
    admin = authenticate(username="admin", password=logins["admin"])
    demo = authenticate(username="demo", password=logins["demo"])
    assert admin is not None and admin.is_staff and admin.is_superuser
    assert demo is not None and not demo.is_staff

    assert run_ensure_accounts() == logins  # a second run reuses the accounts
    assert get_user_model().objects.count() == 2
    assert (tmp_path / "logins.json").stat().st_mode & 0o077 == 0


# --------------------------------------------------------------------------- stylize


def _photo_file(path, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    pixels = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) % 256], axis=-1)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def tiny_style(use_local_backend):
    return StyleFactory(slug="tiny", model_name="tiny", live_version=1)


def run_stylize(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("stylize", *map(str, args), "--style", "tiny", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_stylize_paints_photos_and_folders_into_out_dir_through_the_product_path(
    tiny_style, tmp_path
):
    folder = tmp_path / "folder"
    folder.mkdir()
    _photo_file(folder / "b.png", (36, 44), seed=1)
    _photo_file(folder / "c.jpg", (50, 20), seed=2)
    (folder / "SOURCES.md").write_text("not a photo, and not taken from a folder")
    single = _photo_file(tmp_path / "a.png", seed=3)
    out_dir = tmp_path / "painted" / "tiny"

    printed, _ = run_stylize(single, folder, "--out-dir", out_dir)

    assert sorted(path.name for path in out_dir.iterdir()) == ["a.png", "b.png", "c.png"]
    assert "3 photos painted" in printed
    assert get_backend().load_count == 1  # one process, the model loaded once
    for name, source in [("a", single), ("b", folder / "b.png"), ("c", folder / "c.jpg")]:
        with Image.open(out_dir / f"{name}.png") as result:
            assert result.format == "PNG"
            painted = np.asarray(result.convert("RGB"))
        expected = photo_stylize(photo=load_photo(source, max_side=1024), style=tiny_style)
        np.testing.assert_array_equal(painted, expected)  # what a job would return


def test_stylize_reports_bad_files_carries_on_and_exits_non_zero(tiny_style, tmp_path):
    good = _photo_file(tmp_path / "good.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "missing.png"
    later = _photo_file(tmp_path / "later.png", seed=4)
    out_dir = tmp_path / "out"
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match="2 of 4 photos could not be painted") as failure:
        call_command("stylize", str(good), str(broken), str(missing), str(later), "--style", "tiny",
                     "--out-dir", str(out_dir), stdout=out, stderr=err)

    assert sorted(path.name for path in out_dir.iterdir()) == ["good.png", "later.png"]
    assert f"Skipped {broken}: Cannot read {broken} as an image" in err.getvalue()
    assert f"Skipped {missing}: Cannot read {missing}" in err.getvalue()
    assert "broken.jpg" in str(failure.value) and "missing.png" in str(failure.value)
    assert "good.png (40×30" in out.getvalue() and "later.png" in out.getvalue()


def test_stylize_one_photo_keeps_its_default_name_and_minus_o(tiny_style, tmp_path):
    photo = _photo_file(tmp_path / "in.png", (90, 60))
    printed, _ = run_stylize(photo, "--max-side", 64)
    assert Image.open(tmp_path / "in-tiny.jpg").size == (64, 43)
    assert "in-tiny.jpg (64×43" in printed
    run_stylize(photo, "-o", tmp_path / "named.png")
    assert Image.open(tmp_path / "named.png").format == "PNG"

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    with pytest.raises(CommandError, match="Cannot read .*broken.png as an image"):
        run_stylize(broken)


def test_stylize_usage_errors_come_before_any_painting(tiny_style, tmp_path):
    a = _photo_file(tmp_path / "a.png")
    b = _photo_file(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    twin = _photo_file(tmp_path / "sub" / "a.jpg")
    with pytest.raises(CommandError, match="need --out-dir"):
        run_stylize(a, b)
    with pytest.raises(CommandError, match="need --out-dir"):
        run_stylize(tmp_path / "sub")
    with pytest.raises(CommandError, match="not both"):
        run_stylize(a, "-o", tmp_path / "x.png", "--out-dir", tmp_path / "out")
    with pytest.raises(CommandError, match="both be written as a.png"):
        run_stylize(a, twin, "--out-dir", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CommandError, match="No photos"):
        run_stylize(empty, "--out-dir", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert get_backend().load_count == 0


@pytest.fixture
def bank_styles():
    return {
        "alpha": BankStyleFactory(name="Alpha", slug="alpha", bank_index=1),
        "beta": BankStyleFactory(name="Beta", slug="beta", bank_index=2),
        "elsewhere": BankStyleFactory(name="Elsewhere", slug="elsewhere",
                                      model_name="other_bank", bank_index=1),
    }


def test_stylize_stroke_and_blend_flags_reach_the_model(bank_styles, recording_backend, tmp_path):
    calls = recording_backend.calls
    photo = _photo_file(tmp_path / "wide.png", (900, 600))
    out = io.StringIO()
    call_command("stylize", str(photo), "--style", "alpha", "--blend-with", "beta",
                 "--blend", "0.25", "--strength", "0.8", "--stroke", "bold",
                 "-o", str(tmp_path / "out.png"), stdout=out)
    assert Image.open(tmp_path / "out.png").size == (900, 600)
    assert {call["model_name"] for call in calls} == {"bank"}
    np.testing.assert_allclose(calls[0]["style_weights"], [[0.2, 0.6, 0.2]], rtol=1e-6)
    assert max(max(call["shape"][1:3]) for call in calls) == 512  # bold

    calls.clear()
    call_command("stylize", str(photo), "--style", "beta", "--blend-with", "alpha",
                 "--stroke", "fine", "-o", str(tmp_path / "even.png"), stdout=out)
    np.testing.assert_allclose(calls[0]["style_weights"], [[0, 0.5, 0.5]])
    assert max(max(call["shape"][1:3]) for call in calls) == 900  # fine: as it is


def test_stylize_mixes_two_styles_of_the_real_tiny_bank(use_local_backend, tmp_path):
    from tests.model_fixtures import TINY_BANK_NAME

    first, second = (
        BankStyleFactory(slug=f"slot-{index}", model_name=TINY_BANK_NAME, bank_index=index,
                         live_version=1)
        for index in (1, 2)
    )
    photo = _photo_file(tmp_path / "in.png", (64, 48))
    run_args = [str(photo), "--style", "slot-1", "--stroke", "fine"]
    call_command("stylize", *run_args, "-o", str(tmp_path / "one.png"), stdout=io.StringIO())
    call_command("stylize", *run_args, "--blend-with", "slot-2", "--blend", "0.4",
                 "-o", str(tmp_path / "mixed.png"), stdout=io.StringIO())

    one, mixed = (np.asarray(Image.open(tmp_path / name)) for name in ("one.png", "mixed.png"))
    assert not np.array_equal(one, mixed)
    expected = photo_stylize(photo=load_photo(photo, max_side=1024), style=first,
                             stroke="fine", blend_with=second, blend=0.4)
    np.testing.assert_array_equal(mixed, expected)  # what a job with that mix would return


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--style", "nope"], "No style with slug 'nope'."),
        (["--style", "alpha", "--blend", "0.5"], "--blend: A mix needs a second style"),
        (["--style", "alpha", "--blend-with", "elsewhere"],
         "--blend-with: Alpha and Elsewhere cannot be mixed: only styles that share one "
         "network can. Alpha can be mixed with: Beta (beta)."),
        (["--style", "alpha", "--blend-with", "nope"],
         "--blend-with: There is no style “nope” to mix in."),
        (["--style", "alpha", "--blend-with", "beta", "--blend", "2"],
         "--blend: The mix must be a number from 0 to 1."),
        (["--style", "alpha", "--stroke", "huge"],
         "--stroke: Brush strokes must be one of fine, medium, bold, not “huge”."),
    ],
)
def test_stylize_refuses_an_unknown_style_or_a_bad_mix(bank_styles, tmp_path, flags, message):
    photo = _photo_file(tmp_path / "in.png")
    with pytest.raises(CommandError) as refused:
        call_command("stylize", str(photo), *flags, stdout=io.StringIO())
    assert message in str(refused.value)
    assert not list(tmp_path.glob("in-*"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--style", "nope"], "No style with slug 'nope'."),
        (["--style", "alpha", "--blend", "0.5"], "--blend: A mix needs a second style"),
    ],
)
def test_manage_py_stylize_exits_non_zero_with_the_message(
    transactional_db, settings, tmp_path, flags, message
):
    BankStyleFactory(name="Alpha", slug="alpha", bank_index=1)
    photo = _photo_file(tmp_path / "in.png")
    finished = subprocess.run(
        [sys.executable, "manage.py", "stylize", str(photo), *flags],
        cwd=BASE_DIR, env=worker_env(settings), capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 1, finished.stderr
    assert f"CommandError: {message}" in finished.stderr
    assert not list(tmp_path.glob("in-*"))


# --------------------------------------------------------------------------- evaluate_style


def test_evaluate_style_prints_the_numbers_of_ml_quality_evaluate_style(
    settings, use_local_backend, tmp_path
):
    import keras

    from ml.bank import mix_weights
    from ml.export import load_savedmodel_fn
    from ml.losses import build_loss_network
    from ml.quality import QUALITY_LAYERS, SCORE_NAMES, evaluate_style

    settings.VAR_DIR = tmp_path / "var"
    weights = tmp_path / "vgg16_random.weights.h5"
    keras.utils.set_random_seed(0)
    keras.applications.VGG16(include_top=False, weights=None).save_weights(weights)
    style = StyleFactory(slug="tiny", model_name="tiny", live_version=1, training_settings={
        "loss_network": "vgg16", "loss_weights": str(weights)})
    photos = tmp_path / "held_out"
    photos.mkdir()
    _photo_file(photos / "p0.png", (40, 32), seed=5)
    _photo_file(photos / "p1.png", (30, 44), seed=6)

    out = io.StringIO()
    call_command("evaluate_style", "tiny", "--images", str(photos),
                 "--sheet", str(tmp_path / "sheet.png"), stdout=out)
    printed = dict(re.findall(r"^  (\w+) (\S+)$", out.getvalue(), flags=re.MULTILINE))

    model = load_savedmodel_fn(settings.SERVING_DIR / "models" / "tiny" / "1")
    network = build_loss_network("vgg16", str(weights), layers=list(QUALITY_LAYERS))
    with style.painting.open("rb") as painting_file:
        painting = np.asarray(Image.open(painting_file).convert("RGB"))
    direct = evaluate_style(str(photos), painting, network,
                            stylize=lambda photo: model(photo[None], mix_weights(2, 1))[0])
    assert "photos at 384 px, painting at 256 px" in out.getvalue()
    for name in SCORE_NAMES:
        assert float(printed[name]) == pytest.approx(direct[name], rel=1e-3), name
    style.refresh_from_db()
    assert style.metrics["heldout"]["quality"]["style_distance_ratio"] == pytest.approx(
        direct["style_distance_ratio"], rel=1e-5)
