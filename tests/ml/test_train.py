import hashlib
import importlib.util
import json
import re

import keras
import numpy as np
import pytest
from PIL import Image

from ml import bank
from ml.callbacks import DivergenceMonitor
from ml.checkpoints import TrainingDiverged, latest_checkpoint, load_checkpoint, save_checkpoint
from ml.config import TrainConfig
from ml.fit_input import SlotSampler, fit_input
from ml.train import parse_args, train
from ml.trainer import build_trainer, build_transform_net
from tests.helpers import BASE_DIR, noise_photos
from tests.helpers import TRAIN_SIZE as SIZE

#: What fit feeds a lone painting's trainer when only its painted slot should train.
PAINTED_SLOT = SlotSampler([1], seed=0)


def in_style(photos, slot=1, num_styles=2):
    """The style weights that paint ``photos`` in ``slot`` of a lone painting's bank."""
    return bank.one_hot([slot] * len(photos), num_styles)


def photo_batch(seed=0, batch=2):
    return np.random.default_rng(seed).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32")


def tiny_config(painting, out_dir, **overrides):
    settings = dict(
        painting=str(painting),
        data_dir=None,
        out_dir=str(out_dir),
        steps=4,
        size=SIZE,
        batch=2,
        loss_network="vgg16",
        loss_weights=None,
        width=0.25,
        num_residual_blocks=1,
        checkpoint_every=2,
        sample_every=1000,
        verbose=0,
        precision="float32",
        style_warmup=0.0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def tensorboard_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [events] = folder.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    return set(accumulator.Tags()["tensors"])


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_total_loss_falls_on_a_fixed_batch(painting, tmp_path):
    totals = []
    config = tiny_config(painting, tmp_path / "run", steps=20, lr=1e-2, checkpoint_every=100)
    result = train(
        config, dataset=[photo_batch()], on_progress=lambda p: totals.append(p.losses["total"])
    )

    assert len(totals) == 20 and result.steps == 20 and result.steps_this_run == 20
    assert np.mean(totals[-3:]) < 0.7 * totals[0]
    assert result.final_losses["total"] == pytest.approx(totals[-1])
    assert result.mean_losses["total"] == pytest.approx(np.mean(totals), rel=1e-5)
    assert result.model_path.is_file()


def test_training_writes_checkpoints_samples_and_the_final_model(painting, tmp_path):
    import keras

    out = tmp_path / "run"
    config = tiny_config(painting, out, steps=4, sample_every=2, log_every=2, keep_checkpoints=1)
    result = train(config, dataset=[photo_batch()])

    checkpoints = out / "checkpoints"
    latest = json.loads((checkpoints / "latest.json").read_text())
    assert latest == {"step": 4, "dir": "step-00000004"}
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest.json", "step-00000004"]
    state = json.loads((checkpoints / "step-00000004" / "state.json").read_text())
    assert state["step"] == 4 and set(state["losses"]) >= {"total", "content", "style", "tv"}
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["step-00000002.png", "step-00000004.png"]
    if importlib.util.find_spec("tensorboard"):
        tags = tensorboard_tags(out / "logs" / "train")
        # Every weighted term, each style layer's too, and the output image's stats.
        assert {"batch_total", "batch_content", "batch_style", "batch_tv", "batch_output_std",
                "batch_style_block1_conv2", "batch_style_block4_conv3"} <= tags
        assert "stylized" in tensorboard_tags(out / "logs" / "samples")
    reloaded = keras.saving.load_model(result.model_path)
    photos = photo_batch()
    assert reloaded.num_styles == 2  # a lone painting is a bank of the identity and itself
    np.testing.assert_allclose(reloaded(photos, in_style(photos)),
                               result.model(photos, in_style(photos)), atol=1e-3)


def test_resume_continues_from_the_last_checkpoint(painting, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(painting, out, steps=4), dataset=[photo_batch()])

    steps_seen = []
    resumed = train(
        tiny_config(painting, out, steps=6, resume=True),
        dataset=[photo_batch()],
        on_progress=lambda p: steps_seen.append(p.step),
    )
    assert steps_seen == [5, 6]
    assert (resumed.steps, resumed.steps_this_run) == (6, 2)
    assert latest_checkpoint(out).name == "step-00000006"


def test_a_fresh_run_sets_the_earlier_runs_checkpoints_aside(painting, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(painting, out, steps=4), dataset=[photo_batch()])
    earlier = tree_digest(out / "checkpoints")

    steps_seen = []
    train(
        tiny_config(painting, out, steps=2),
        dataset=[photo_batch()],
        on_progress=lambda p: steps_seen.append(p.step),
    )

    assert steps_seen == [1, 2]
    assert latest_checkpoint(out).name == "step-00000002"
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000002"]
    assert tree_digest(out / "checkpoints.previous") == earlier


def test_load_checkpoint_restores_weights_and_optimizer_state(painting, tmp_path):
    out = tmp_path / "run"
    trained = train(tiny_config(painting, out, steps=4), dataset=[photo_batch()])

    fresh = build_trainer(tiny_config(painting, out))
    assert load_checkpoint(fresh, latest_checkpoint(out)) == 4
    assert int(fresh.optimizer.iterations.numpy()) == 4
    for restored, saved in zip(fresh.transform_net.weights, trained.model.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())


def test_nan_output_stops_training_and_keeps_the_last_good_checkpoint(painting, tmp_path):
    out = tmp_path / "run"
    good = photo_batch()
    poisoned = good.copy()
    poisoned[0, 0, 0, 0] = np.nan  # instance norm spreads it over the whole image
    digests = {}

    def remember_checkpoint(progress):
        if progress.step == 3:
            digests["before"] = tree_digest(out / "checkpoints")

    with pytest.raises(TrainingDiverged, match="step 4"):
        train(
            tiny_config(painting, out, steps=10),
            dataset=[good, good, good, poisoned],
            on_progress=remember_checkpoint,
        )
    assert latest_checkpoint(out).name == "step-00000002"
    assert tree_digest(out / "checkpoints") == digests["before"]


def test_nan_image_with_finite_losses_is_caught_by_the_image_check(painting, tmp_path, monkeypatch):
    # On some of TF's CPU kernels relu turns NaN into 0, so a NaN image can score
    # finite VGG losses. Simulate that: the loss only ever sees NaN-free pixels.
    from keras import ops

    import ml.trainer

    real_builder = ml.trainer.build_perceptual_loss

    def loss_blind_to_nan(config, dtype=None):
        real_loss = real_builder(config, dtype=dtype)

        def loss(content, stylized, **kwargs):
            # Both sides, as kernels differ on whether NaN reaches the content target.
            return real_loss(ops.where(ops.isnan(content), 0.0, content),
                             ops.where(ops.isnan(stylized), 0.0, stylized), **kwargs)

        loss.loss_network = real_loss.loss_network
        loss.term_names = real_loss.term_names
        return loss

    monkeypatch.setattr(ml.trainer, "build_perceptual_loss", loss_blind_to_nan)
    # Step 3 paints both photos in the painting's slot, so the identity term (which
    # compares the picture with the photo) does not see the poisoned photo either.
    assert SlotSampler([0, 1], TrainConfig.seed)(3, 2).tolist() == [1, 1]
    good = photo_batch()
    poisoned = good.copy()
    poisoned[0, 0, 0, 0] = np.nan
    losses_seen = []

    with pytest.raises(TrainingDiverged, match="output image holds NaN"):
        train(
            tiny_config(painting, tmp_path / "run", steps=10),
            dataset=[good, good, poisoned],
            on_progress=lambda p: losses_seen.append(p.losses),
        )
    assert len(losses_seen) == 2
    assert latest_checkpoint(tmp_path / "run").name == "step-00000002"


def test_checkpoint_with_nan_weights_is_refused_and_latest_kept(painting, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(painting, out)
    trainer = build_trainer(config)
    probe = photo_batch()
    save_checkpoint(trainer, out, 1, {}, probe, DivergenceMonitor())
    before = tree_digest(out / "checkpoints")

    kernel = trainer.transform_net.trainable_weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    with pytest.raises(TrainingDiverged, match="NaN"):
        save_checkpoint(trainer, out, 2, {}, probe, DivergenceMonitor())
    assert latest_checkpoint(out).name == "step-00000001"
    assert tree_digest(out / "checkpoints") == before


def test_monitor_accepts_a_normal_run_and_flags_an_exploding_loss():
    monitor = DivergenceMonitor(explode_factor=100, warmup=10)
    for step in range(1, 31):
        monitor.check(step, {"total": 50.0 / step, "content": 1.0}, 120.0, 40.0)
    with pytest.raises(TrainingDiverged, match="exploded"):
        monitor.check(31, {"total": 1e4, "content": 1.0}, 120.0, 40.0)


@pytest.mark.parametrize(
    "losses, mean, std, reason",
    [
        ({"total": float("nan")}, 120.0, 40.0, "non-finite loss"),
        ({"total": float("inf")}, 120.0, 40.0, "non-finite loss"),
        ({"total": 1.0}, float("nan"), float("nan"), "NaN"),
        ({"total": 1.0}, 0.0, 0.0, "constant"),
    ],
)
def test_monitor_flags_bad_losses_and_dead_images(losses, mean, std, reason):
    with pytest.raises(TrainingDiverged, match=reason):
        DivergenceMonitor().check(1, losses, mean, std)


def test_trainer_optimises_only_the_transform_net(painting, tmp_path):
    trainer = build_trainer(tiny_config(painting, tmp_path))
    assert {id(v) for v in trainer.trainable_variables} == {
        id(v) for v in trainer.transform_net.trainable_variables
    }
    # The frozen VGG is tracked, so stateless backends (jax) pass it explicitly.
    assert len(trainer.non_trainable_variables) >= len(trainer.loss_network.weights)


def test_cli_flags_map_to_the_config():
    config = parse_args([
        "--style", "p.jpg", "--data", "coco", "--out", "runs/p", "--steps", "7",
        "--size", "128", "--batch", "2", "--loss-network", "vgg16", "--loss-weights", "random",
        "--content-weight", "2", "--style-weight", "30", "--tv-weight", "0.5", "--lr", "0.002",
        "--width", "0.5", "--resume",
    ])
    assert (config.painting, config.data_dir, config.out_dir) == ("p.jpg", "coco", "runs/p")
    assert (config.steps, config.size, config.batch) == (7, 128, 2)
    assert (config.loss_network, config.loss_weights) == ("vgg16", None)
    assert (config.content_weight, config.style_weight, config.tv_weight) == (2.0, 30.0, 0.5)
    assert (config.lr, config.width, config.resume) == (0.002, 0.5, True)
    assert parse_args(["--style", "p", "--data", "d", "--out", "o"]).loss_weights == "imagenet"


def test_train_reads_photos_from_a_folder(painting, tmp_path):
    photos = noise_photos(tmp_path / "photos", 3, seed=3, name="{}", suffix=".jpg")
    (photos / "broken.jpg").write_bytes(b"nope")

    result = train(tiny_config(painting, tmp_path / "run", data_dir=str(photos), steps=2))
    assert result.steps == 2
    assert result.skipped_photos == 1


def test_train_takes_a_pydataset_of_photos(painting, tmp_path):
    from ml.data import PhotoBatches

    photos = noise_photos(tmp_path / "photos", 5, seed=4, name="{}")
    batches = PhotoBatches(photos, size=SIZE, batch=2)

    result = train(tiny_config(painting, tmp_path / "run", steps=5), dataset=batches)
    assert result.steps == 5
    assert batches.epoch == 2  # two batches per epoch: epochs 0 and 1 used up


def test_max_seconds_stops_early_with_a_checkpoint_at_that_step(painting, tmp_path):
    out = tmp_path / "run"
    steps_seen = []
    result = train(
        tiny_config(painting, out, steps=1000, max_seconds=0.001, checkpoint_every=100),
        dataset=[photo_batch()],
        on_progress=lambda p: steps_seen.append(p.step),
    )
    assert steps_seen == [1]
    assert (result.steps, result.steps_this_run) == (1, 1)
    assert result.seconds >= 0.001
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest == {"step": 1, "dir": "step-00000001"}
    assert result.last_checkpoint == out / "checkpoints" / "step-00000001"
    assert json.loads((result.last_checkpoint / "state.json").read_text())["step"] == 1
    assert result.model_path.is_file()


@pytest.mark.parametrize("max_seconds", [0, 0.0, -5, float("nan")])
def test_config_rejects_a_max_seconds_that_is_not_positive(painting, tmp_path, max_seconds):
    with pytest.raises(ValueError, match="max_seconds"):
        tiny_config(painting, tmp_path, max_seconds=max_seconds)


@pytest.fixture
def source_net(painting, tmp_path):
    """A transform net of the tiny architecture whose weights differ from a seeded fresh one."""
    import keras

    from ml.trainer import build_transform_net

    config = tiny_config(painting, tmp_path / "source")
    keras.utils.set_random_seed(12345)
    net = build_transform_net(config, 2)
    net.save(tmp_path / "source.keras")
    net.save_weights(tmp_path / "source.weights.h5")
    # train() seeds with config.seed before building its net: that start must differ,
    # or starting "from the source" would prove nothing.
    keras.utils.set_random_seed(config.seed)
    seeded = build_transform_net(config, 2)
    assert any(
        not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(seeded.weights, net.weights)
    )
    return net


@pytest.mark.parametrize("file_name", ["source.keras", "source.weights.h5"])
def test_init_weights_starts_a_fresh_run_from_another_net(
    painting, tmp_path, source_net, file_name
):
    # lr=0: Adam leaves every weight where it started, so the final net is the start.
    config = tiny_config(
        painting, tmp_path / "run", steps=1, lr=0.0, init_weights=str(tmp_path / file_name)
    )
    result = train(config, dataset=[photo_batch()])
    trained = [v.numpy() for v in result.model.weights]
    source = [v.numpy() for v in source_net.weights]
    assert len(trained) == len(source)
    for got, want in zip(trained, source):
        np.testing.assert_array_equal(got, want)


def test_resume_ignores_init_weights_and_keeps_the_checkpoint(painting, tmp_path, source_net):
    out = tmp_path / "run"
    first = train(tiny_config(painting, out, steps=1), dataset=[photo_batch()])
    checkpointed = [v.numpy() for v in first.model.weights]

    resumed = train(
        tiny_config(
            painting, out, steps=1, resume=True, init_weights=str(tmp_path / "source.keras")
        ),
        dataset=[photo_batch()],
    )
    assert resumed.steps_this_run == 0
    for got, want in zip(resumed.model.weights, checkpointed):
        np.testing.assert_array_equal(got.numpy(), want)


def test_cli_maps_the_time_budget_architecture_and_init_weights_flags(tmp_path, capsys):
    start = tmp_path / "transform_net.keras"
    start.write_bytes(b"")
    config = parse_args([
        "--style", "p.jpg", "--data", "coco", "--out", "runs/p", "--max-seconds", "400.5",
        "--init-weights", str(start), "--residual-blocks", "5", "--output-kernel", "9",
        "--edge-margin", "0",
    ])
    assert config.max_seconds == 400.5
    assert config.init_weights == str(start.resolve())
    assert (config.num_residual_blocks, config.output_kernel_size) == (5, 9)
    assert config.edge_margin == 0 and build_transform_net(config, 2).edge_margin == 0

    defaults = parse_args(["--style", "p", "--data", "d", "--out", "o"])
    assert (defaults.max_seconds, defaults.init_weights) == (None, None)
    assert (defaults.num_residual_blocks, defaults.output_kernel_size) == (3, 3)
    assert build_transform_net(defaults, 2).edge_margin == 16
    for bad in (["--max-seconds", "0"], ["--init-weights", str(tmp_path / "none.keras")],
                ["--output-kernel", "4"]):
        with pytest.raises(SystemExit):
            parse_args(["--style", "p", "--data", "d", "--out", "o", *bad])
    assert "--output-kernel: must be an odd whole number" in capsys.readouterr().err


def test_config_output_kernel_and_residual_blocks_shape_the_net(painting, tmp_path):
    from ml.trainer import build_transform_net

    config = tiny_config(painting, tmp_path, output_kernel_size=3, num_residual_blocks=2)
    net = build_transform_net(config, 2)
    assert net.output_kernel_size == 3 and len(net.residual_blocks) == 2
    assert tuple(net.conv_out.kernel.shape)[:2] == (3, 3)


def test_divergence_names_the_last_good_checkpoint(painting, tmp_path):
    out = tmp_path / "run"
    good = photo_batch()
    poisoned = good.copy()
    poisoned[0, 0, 0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match="last good checkpoint is .*step-00000002") as caught:
        train(tiny_config(painting, out, steps=10), dataset=[good, good, poisoned])
    assert caught.value.last_checkpoint == out / "checkpoints" / "step-00000002"
    assert not (out / "transform_net.keras").exists()  # no final model from a diverged run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_default_recipe_trains_without_diverging_over_seeds(painting, tmp_path, seed):
    # The default weights and learning rate (no overrides), on tiny photos.
    rng = np.random.default_rng(seed)
    batches = [rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32") for _ in range(3)]
    totals = []
    result = train(
        tiny_config(painting, tmp_path / "run", steps=30, seed=seed, checkpoint_every=10),
        dataset=batches, on_progress=lambda p: totals.append(p.losses["total"]),
    )
    assert result.steps == 30 and all(np.isfinite(totals))
    assert np.mean(totals[-5:]) < np.mean(totals[:5])


def test_cpu_bfloat16_is_read_from_the_cpu_flags():
    from ml.precision import cpu_has_bf16

    assert cpu_has_bf16("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert not cpu_has_bf16("flags : fpu sse avx2 avx512f\n")
    assert not cpu_has_bf16("")


def test_auto_precision_is_bfloat16_on_a_bf16_cpu_float16_on_a_gpu(painting, tmp_path, monkeypatch):
    import keras

    import ml.precision
    from ml.precision import resolve_precision

    config = tiny_config(painting, tmp_path, precision="auto")
    monkeypatch.setattr(ml.precision, "gpu_available", lambda: True)
    assert resolve_precision(config) == "mixed_float16"
    monkeypatch.setattr(ml.precision, "gpu_available", lambda: False)
    monkeypatch.setattr(ml.precision, "cpu_has_bf16", lambda: True)
    expected = "mixed_bfloat16" if keras.backend.backend() == "tensorflow" else "float32"
    assert resolve_precision(config) == expected
    monkeypatch.setattr(ml.precision, "cpu_has_bf16", lambda: False)
    assert resolve_precision(config) == "float32"
    asked = tiny_config(painting, tmp_path, precision="mixed_bfloat16")
    assert resolve_precision(asked) == "mixed_bfloat16"


def test_a_bfloat16_run_learns_and_hands_back_a_float32_model(painting, tmp_path):
    import keras

    totals = []
    result = train(
        tiny_config(painting, tmp_path / "run", steps=20, lr=1e-2, precision="mixed_bfloat16",
                    checkpoint_every=100),
        dataset=[photo_batch()], on_progress=lambda p: totals.append(p.losses["total"]),
    )
    assert result.precision == "mixed_bfloat16"
    assert np.mean(totals[-3:]) < 0.7 * totals[0]
    assert result.model.dtype_policy.name == "float32"
    reloaded = keras.saving.load_model(result.model_path)
    assert reloaded.dtype_policy.name == "float32"
    assert all(w.dtype == "float32" for w in reloaded.weights)
    photos = photo_batch()
    np.testing.assert_allclose(reloaded(photos, in_style(photos)),
                               result.model(photos, in_style(photos)), atol=1e-3)


JAX_SCRIPT = """
import json, sys
import keras
import numpy as np
from PIL import Image
from ml.config import TrainConfig
from ml.train import train
painting, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
batch = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
totals = []
config = TrainConfig(painting=painting, out_dir=out, steps=15, size=32, batch=2,
                     loss_weights=None, width=0.25, num_residual_blocks=1, lr=1e-2,
                     checkpoint_every=5, sample_every=100, verbose=0)
result = train(config, dataset=[batch], on_progress=lambda p: totals.append(p.losses["total"]))
print(json.dumps({"totals": totals, "steps": result.steps, "precision": result.precision}))
"""


@pytest.mark.slow
def test_fit_trains_on_the_jax_backend_too(painting, tmp_path):
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (the GPU machine trains with Keras on JAX)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(BASE_DIR)}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(painting), str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=600, cwd=BASE_DIR)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["steps"] == 15 and report["precision"] == "float32"
    assert np.mean(report["totals"][-3:]) < 0.7 * report["totals"][0]
    assert latest_checkpoint(tmp_path / "run").name == "step-00000015"


def test_cosine_schedule_decays_to_a_tenth_over_the_steps_and_resumes_in_place(painting, tmp_path):
    from ml.trainer import learning_rate

    config = tiny_config(painting, tmp_path / "run", steps=4, lr=1e-2, lr_schedule="cosine")
    schedule = learning_rate(config)
    assert float(schedule(0)) == pytest.approx(1e-2)
    assert float(schedule(2)) == pytest.approx(0.55e-2, rel=1e-3)
    assert float(schedule(4)) == pytest.approx(1e-3)
    assert learning_rate(tiny_config(painting, tmp_path, lr=1e-2)) == 1e-2  # constant

    train(config, dataset=[photo_batch()])
    resumed = build_trainer(config.replace(steps=8, resume=True))
    load_checkpoint(resumed, latest_checkpoint(tmp_path / "run"))
    # The schedule reads the restored iteration count.
    assert int(resumed.optimizer.iterations.numpy()) == 4
    assert float(resumed.optimizer.learning_rate.numpy()) == pytest.approx(
        float(learning_rate(config.replace(steps=8))(4)), rel=1e-5)


def test_the_photo_pipeline_gets_the_configs_scale_range_and_augmentation(
    painting, tmp_path, monkeypatch
):
    import ml.fit_input
    from ml.data import Augmentation, SkipCounter

    seen = {}
    monkeypatch.setattr(ml.fit_input, "make_dataset", lambda folder, **kw: seen.update(kw) or "tf")
    monkeypatch.setattr(ml.fit_input, "PhotoBatches", lambda folder, **kw: seen.update(kw) or "py")
    config = tiny_config(painting, tmp_path, data_dir=str(tmp_path), max_scale=3.0, augment=False,
                         crush_blacks=0.3)
    ml.fit_input.default_dataset(config, seed=5, skips=SkipCounter())
    assert seen["augmentation"] == Augmentation(scale_range=(1.0, 3.0)).plain()
    assert (seen["size"], seen["batch"], seen["seed"]) == (SIZE, 2, 5)
    ml.fit_input.default_dataset(config.replace(augment=True), seed=5, skips=SkipCounter())
    assert seen["augmentation"] == Augmentation(scale_range=(1.0, 3.0), crush_blacks=0.3)


def test_style_warmup_ramps_the_style_term_from_zero(painting, tmp_path):
    from ml.fit_input import style_scale

    assert [style_scale(step, 4) for step in (1, 2, 3, 5, 9)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert style_scale(1, 0) == 1.0
    styles = []
    config = tiny_config(painting, tmp_path / "run", steps=8, style_warmup=0.5)
    assert config.style_warmup_steps == 4
    # Eight photos a step: every step paints some in the painting's slot (the others
    # train the identity, which has no style term).
    train(config, dataset=[photo_batch(batch=8)],
          on_progress=lambda p: styles.append(p.losses["style"]))
    assert styles[0] == 0.0 and all(value > 0 for value in styles[1:])


@pytest.mark.parametrize("as_tf_data", [False, True])
def test_the_warmup_ramp_continues_from_the_resumed_step(as_tf_data):
    from ml.fit_input import fit_input

    batches = [photo_batch(seed) for seed in range(3)]
    if as_tf_data:
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices(np.stack(batches))
    else:
        dataset = batches
    first, pairs = fit_input(dataset, slots=PAINTED_SLOT, start_step=4, warmup_steps=6,
                             batch=2)
    np.testing.assert_array_equal(first, batches[0])
    scales = []
    for _, ((images, slots), scale) in zip(range(4), pairs):
        assert np.asarray(images).shape == (2, SIZE, SIZE, 3) and np.asarray(scale).shape == (2,)
        assert np.asarray(slots).tolist() == [1, 1]
        scales.append(float(np.asarray(scale)[0]))
    assert scales == pytest.approx([4 / 6, 5 / 6, 1.0, 1.0])


def test_a_run_missing_what_it_needs_fails_at_once_naming_each_thing(tmp_path, painting):
    from ml.preflight import CannotTrain

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    empty = tmp_path / "no-photos"
    empty.mkdir()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    config = tiny_config(broken, blocked / "run", data_dir=str(empty),
                         loss_weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(CannotTrain) as failed:
        train(config)
    message = str(failed.value)
    assert "the painting" in message and "broken.png" in message
    assert f"no JPEG or PNG photos in {empty}" in message
    assert "missing.weights.h5 is not a file" in message
    assert "is not writable" in message
    with pytest.raises(CannotTrain, match="does not exist"):
        train(tiny_config(painting, tmp_path / "ok", data_dir=str(tmp_path / "nowhere")))


def _one_photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (40, 40), (90, 120, 30)).save(folder / "one.png")
    return folder


@pytest.mark.parametrize("name, content, why", [
    ("vgg.weights.h5", b"not hdf5 at all", "cannot be loaded (OSError"),
    ("net.keras", b"PK\x03\x04 a broken zip", "cannot be loaded (BadZipFile"),
])
def test_weights_that_cannot_be_loaded_stop_a_run_at_once(tmp_path, painting, name, content,
                                                          why):
    from ml.preflight import CannotTrain

    weights = tmp_path / name
    weights.write_bytes(content)
    field = "loss_weights" if name.endswith(".h5") else "init_weights"
    config = tiny_config(painting, tmp_path / "run", data_dir=str(_one_photo(tmp_path)),
                         **{field: str(weights)})
    with pytest.raises(CannotTrain, match=re.escape(f"{field} {weights} {why}")):
        train(config)


def test_an_empty_hdf5_file_is_not_loss_weights(tmp_path, painting):
    import h5py

    from ml.preflight import CannotTrain

    empty = tmp_path / "empty.weights.h5"
    with h5py.File(empty, "w") as handle:
        handle.create_group("layers")
    config = tiny_config(painting, tmp_path / "run", data_dir=str(_one_photo(tmp_path)),
                         loss_weights=str(empty))
    with pytest.raises(CannotTrain, match="the file holds no weights"):
        train(config)


def test_the_saturation_term_pulls_a_flat_black_net_back_into_tanhs_live_range(
        painting, tmp_path):
    """A net whose last convolution sits far below -SATURATION_LIMIT paints flat black,
    and tanh passes (next to) no gradient from the picture's terms; the saturation term
    counts it and a few steps bring the logits back."""
    from ml.trainer import SATURATION_LIMIT

    keras.utils.set_random_seed(5)  # the same fresh net whatever ran before in this worker
    photos = photo_batch()
    config = tiny_config(painting, tmp_path / "run", saturation_weight=1e4, lr=0.05)
    trainer = build_trainer(config)
    assert "saturation" in trainer.term_names
    assert "saturation" not in build_trainer(tiny_config(painting, tmp_path / "b")).term_names
    net = trainer.transform_net
    weights, slots = in_style(photos), np.ones(len(photos), np.int32)
    # In training the trainer gives the pictures (without the edge margin) and the
    # logits they come from.
    pictures, logits, _ = trainer((photos, slots), training=True)
    np.testing.assert_allclose(np.asarray(pictures),
                               np.asarray(net(photos, weights, training=True)), atol=1e-4)
    np.testing.assert_allclose(np.asarray(pictures), (np.tanh(np.asarray(logits)) + 1) * 127.5,
                               atol=1e-3)
    # Pictures only, not training.
    assert np.asarray(trainer((photos, slots))).shape == photos.shape

    bias = net.conv_out.trainable_weights[-1]
    bias.assign(np.full(bias.shape, -8.0, "float32"))
    assert np.asarray(net(photos, weights)).max() < 0.5  # flat black

    def saturation():
        logits = np.asarray(net.output_logits(photos, weights))
        return float(np.mean(np.maximum(np.abs(logits) - SATURATION_LIMIT, 0.0) ** 2))

    before = saturation()
    trainer.fit(fit_input([photos], slots=PAINTED_SLOT, warmup_steps=0)[1], steps_per_epoch=15,
                epochs=1, verbose=0)
    assert saturation() < 0.5 * before
    assert np.asarray(net(photos, weights)).max() > 0.5


def _with_and_without(term, weight, painting, photos, measure, out_dir):
    """``(trainer, before, after)`` for 12 steps on ``photos`` with ``{term}_weight`` at
    ``weight``, then the same for a trainer without the term: the same fresh net (seed
    3) each time; ``before`` and ``after`` are ``measure(net)`` around the steps."""
    def fitted(value, folder):
        keras.utils.set_random_seed(3)
        trainer = build_trainer(tiny_config(painting, out_dir / folder, lr=0.02,
                                            **{f"{term}_weight": value}))
        before = measure(trainer.transform_net)
        trainer.fit(fit_input([photos], slots=PAINTED_SLOT, warmup_steps=0)[1],
                    steps_per_epoch=12, epochs=1, verbose=0)
        return trainer, before, measure(trainer.transform_net)

    return fitted(weight, term), fitted(0.0, "plain")


def test_the_spike_term_trains_a_droplet_out_of_the_inner_maps(painting, tmp_path):
    """A bright dot on a flat photo is a spike in every inner map of a fresh net (the
    rest of each map is flat; at 96 px, as a map of n values reaches at most sqrt(n)
    standard deviations); the spike term counts it, and a few steps with it lower it,
    where the same steps without it do not."""
    from ml.losses import spike_loss

    photos = np.full((2, 96, 96, 3), 90.0, np.float32)
    photos[:, 48, 48] = 255.0

    def spikes(net):
        return float(np.mean(np.asarray(spike_loss(net.trace(photos, in_style(photos))[1]))))

    (trainer, before, after), (plain, plain_before, plain_after) = _with_and_without(
        "spike", 1e7, painting, photos, spikes, tmp_path)
    assert "spike" in trainer.term_names
    assert before > 0.0
    assert after < 0.5 * before
    assert "spike" not in plain.term_names
    assert plain_before == pytest.approx(before)  # the same fresh net
    assert plain_after > after


def test_the_shadow_term_trains_a_flat_black_towards_the_paintings_shadow_colours(tmp_path):
    """A flat black square in a photo is painted near black by a net that keeps the
    photo; a few steps with the shadow term bring it nearer the painting's own shadow
    colour (a strong blue here), where the same steps without it do not."""
    from PIL import Image

    from ml.losses import shadow_colour_loss, shadow_palette

    rng = np.random.default_rng(1)
    pixels = np.where(rng.random((40, 40, 1)) < 0.3, (30, 40, 200), (240, 220, 80))
    painting = tmp_path / "blue-shadows.png"  # yellow lights, blue shadows
    Image.fromarray(pixels.astype(np.uint8)).save(painting)
    photos = np.full((2, 64, 64, 3), 150.0, np.float32)
    photos[:, 16:48, 16:48] = 0.0
    palette = shadow_palette(painting)[None].repeat(2, axis=0)

    def off_palette(net):
        painted = net(photos, in_style(photos))
        return float(np.mean(np.asarray(shadow_colour_loss(photos, painted, palette))))

    (trainer, before, after), (plain, plain_before, plain_after) = _with_and_without(
        "shadow", 1e7, painting, photos, off_palette, tmp_path)
    assert "shadow" in trainer.term_names
    assert "shadow" not in plain.term_names
    assert plain_before == pytest.approx(before)  # the same fresh net
    assert after < 0.5 * min(before, plain_after), (before, after, plain_after)
