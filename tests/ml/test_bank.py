"""Banks: conditional instance norm, joint training, slot fine-tunes, bank export."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from PIL import Image

from ml import bank
from ml.bank import BankSlot, CannotMix, PaintInputs
from ml.config import TrainConfig
from ml.export import (
    BANK_MODEL_FILE,
    SLOTS_FILE,
    export_savedmodel,
    load_savedmodel_fn,
    read_slots,
)
from ml.fit_input import SlotSampler
from ml.layers import ConditionalInstanceNormalization, InstanceNormalization, ResidualBlock
from ml.model import TransformNet
from ml.train import train
from tests.helpers import TRAIN_SIZE as SIZE
from tests.helpers import feature_maps, noise_batch, randomised, tiny_bank

# --------------------------------------------------------------------------- the layer


def test_conditional_norm_config_round_trip():
    layer = ConditionalInstanceNormalization(4, epsilon=1e-3, name="cin")
    clone = ConditionalInstanceNormalization.from_config(layer.get_config())
    assert (clone.num_styles, clone.epsilon, clone.name) == (4, 1e-3, "cin")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, ConditionalInstanceNormalization) and restored.num_styles == 4


def test_one_hot_weights_give_that_style_and_a_mix_gives_the_mean_map():
    x = feature_maps()
    layer = randomised(ConditionalInstanceNormalization(3))
    layer(x, bank.one_hot([0, 0, 0], 3))  # build
    layer = randomised(layer)
    scale, offset = (np.asarray(w) for w in layer.get_weights())
    normalised = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(
        x.var(axis=(1, 2), keepdims=True) + 1e-5)

    styled = np.asarray(layer(x, bank.one_hot([0, 1, 2], 3)))
    for image, slot in enumerate((0, 1, 2)):
        np.testing.assert_allclose(styled[image], normalised[image] * scale[slot] + offset[slot],
                                   rtol=1e-4, atol=1e-4)

    half = np.tile(np.array([[0.5, 0.5, 0.0]], "float32"), (3, 1))
    mixed = np.asarray(layer(x, half))
    expected = normalised * (scale[0] + scale[1]) / 2 + (offset[0] + offset[1]) / 2
    np.testing.assert_allclose(mixed, expected, rtol=1e-4, atol=1e-4)


def test_a_one_hot_row_equals_instance_normalization_with_that_slots_map():
    x = feature_maps(2)
    plain = InstanceNormalization()
    plain(x)
    randomised(plain)
    conditional = ConditionalInstanceNormalization(2)
    conditional(x, bank.one_hot([1, 1, 1], 2))
    randomised(conditional, seed=3)
    scale, offset = (np.asarray(w) for w in conditional.get_weights())
    plain_scale, plain_offset = plain.get_weights()
    scale[1], offset[1] = plain_scale, plain_offset  # slot 1 holds the plain layer's map
    conditional.set_weights([scale, offset])
    np.testing.assert_allclose(np.asarray(conditional(x, bank.one_hot([1, 1, 1], 2))),
                               np.asarray(plain(x)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(conditional(x, bank.one_hot([0, 0, 0], 2))),
                           np.asarray(plain(x)), atol=1e-2)


@pytest.mark.parametrize("num_styles", [1, 0, True, 2.0])
def test_fewer_than_two_slots_are_refused_by_every_layer_and_the_network(num_styles):
    """Slot 0 is the identity: every network has it and at least one style."""
    for make in (ConditionalInstanceNormalization, lambda n: ResidualBlock(8, num_styles=n),
                 lambda n: TransformNet(width=0.125, num_styles=n)):
        with pytest.raises(ValueError, match="identity slot and at least one style"):
            make(num_styles)


def test_wrong_number_of_style_weights_is_refused():
    layer = ConditionalInstanceNormalization(3)
    with pytest.raises(ValueError, match="style_weights of shape"):
        layer(feature_maps(), np.ones((3, 2), "float32"))


def test_residual_block_keeps_num_styles_in_its_config():
    block = ResidualBlock(8, num_styles=3)
    assert ResidualBlock.from_config(block.get_config()).num_styles == 3
    assert ResidualBlock(8).get_config()["num_styles"] == 2  # a lone style's block
    assert ResidualBlock.from_config(ResidualBlock(8).get_config()).num_styles == 2


# --------------------------------------------------------------------------- the network


def test_a_bank_paints_each_slot_differently_and_a_mix_lies_between():
    net = tiny_bank()
    x = noise_batch(1)
    one, two = (np.asarray(net(x, bank.one_hot([s], 3))) for s in (1, 2))
    mix = np.asarray(net(x, np.array([[0, 0.5, 0.5]], "float32")))
    assert np.abs(one - two).mean() > 1.0
    assert np.abs(mix - one).mean() > 0.2 and np.abs(mix - two).mean() > 0.2


def test_a_bank_needs_style_weights_and_saves_with_its_slots(tmp_path):
    net = tiny_bank()
    with pytest.raises(ValueError, match="bank of 3 slots"):
        net(noise_batch(1))
    net.save(tmp_path / "bank.keras")
    loaded = keras.saving.load_model(tmp_path / "bank.keras")
    weights = bank.one_hot([1, 2], 3)
    assert loaded.num_styles == 3
    np.testing.assert_array_equal(
        np.asarray(loaded(noise_batch(), weights)), np.asarray(net(noise_batch(), weights))
    )


def test_a_network_of_one_style_is_a_lone_bank_of_the_identity_and_itself():
    keras.utils.set_random_seed(4)
    net = TransformNet(width=0.125, num_residual_blocks=1)
    with pytest.raises(ValueError, match="bank of 2 slots"):
        net(noise_batch(1))  # no weights, no params: nothing says what to paint
    net(noise_batch(1), bank.one_hot([1], 2))
    assert net.num_styles == 2 and net.get_config()["num_styles"] == 2
    norms = bank.style_norms(net)
    assert norms and len(norms) == len(net.style_norm_layers())
    assert {norm.num_styles for norm in norms} == {2}
    assert not any(isinstance(layer, InstanceNormalization)
                   for layer in net._flatten_layers(include_self=False))
    # It is a bank like any other: slot 1 as a row, grown, spliced.
    assert bank.slot_params(net, 1).shape == (net.style_params_size,)
    assert bank.grow(net, 3).num_styles == 3


def test_mix_weights_at_full_strength_are_one_hot_on_the_style():
    weights = bank.mix_weights(4, 2)
    assert weights.dtype == np.float32 and weights.shape == (4,)
    np.testing.assert_array_equal(weights, [0, 0, 1, 0])


@pytest.mark.parametrize("strength", [0.0, 0.25, 0.6])
def test_less_strength_gives_the_rest_to_the_identity_slot(strength):
    weights = bank.mix_weights(3, 1, strength=strength)
    np.testing.assert_allclose(weights, [1 - strength, strength, 0], rtol=1e-6)


def test_a_blend_splits_the_strength_between_the_two_styles():
    weights = bank.mix_weights(5, 1, blend_slot=3, blend=0.3, strength=0.8)
    np.testing.assert_allclose(weights, [0.2, 0.8 * 0.7, 0, 0.8 * 0.3, 0], rtol=1e-6)
    np.testing.assert_allclose(
        bank.mix_weights(3, 2, blend_slot=1, blend=1.0), [0, 1, 0])
    np.testing.assert_allclose(
        bank.mix_weights(3, 2, blend_slot=1, blend=0.0), [0, 0, 1])


@pytest.mark.parametrize("strength", [0.0, 0.1, 0.5, 0.93, 1.0])
@pytest.mark.parametrize("blend", [0.0, 0.2, 0.5, 1.0])
def test_the_weights_sum_to_one(strength, blend):
    weights = bank.mix_weights(4, 3, strength=strength, blend_slot=1, blend=blend)
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert (weights >= 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_styles": 1, "slot": 1},  # no style slot at all
        {"num_styles": 3, "slot": 0},  # the identity is not a style
        {"num_styles": 3, "slot": 3},
        {"num_styles": 3, "slot": 1, "blend_slot": 5, "blend": 0.5},
        {"num_styles": 3, "slot": 1, "strength": 1.5},
        {"num_styles": 3, "slot": 1, "strength": float("nan")},
        {"num_styles": 3, "slot": 1, "blend_slot": 2, "blend": -0.1},
        {"num_styles": 3, "slot": 1, "blend": 0.5},  # a share of no second style
    ],
)
def test_impossible_weights_are_refused(kwargs):
    with pytest.raises(ValueError):
        bank.mix_weights(**kwargs)


def test_grow_keeps_every_slot_and_starts_the_new_one_from_the_paintings_mean():
    net = tiny_bank(3)
    grown = bank.grow(net, 4)
    x = noise_batch(1)
    for slot in (0, 1, 2):
        np.testing.assert_array_equal(np.asarray(grown(x, bank.one_hot([slot], 4))),
                                      np.asarray(net(x, bank.one_hot([slot], 3))))
    norm = bank.style_norms(grown)[0]
    scale = np.asarray(norm.scale)
    np.testing.assert_allclose(scale[3], scale[1:3].mean(axis=0), rtol=1e-6)


# --------------------------------------------------------------------------- training


@pytest.fixture
def paintings(tmp_path):
    paths = []
    for seed, colour in ((1, (200, 40, 30)), (2, (20, 60, 210))):
        rng = np.random.default_rng(seed)
        stripes = (np.indices((48, 48)).sum(axis=0) // (3 + seed) % 2)[..., None]
        pixels = np.clip(stripes * np.array(colour) + rng.integers(0, 40, (48, 48, 3)), 0, 255)
        path = tmp_path / f"painting-{seed}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def bank_config(out_dir, **overrides):
    settings = dict(
        data_dir=None, out_dir=str(out_dir), steps=4, size=SIZE, batch=4, loss_network="vgg16",
        loss_weights=None, width=0.125, num_residual_blocks=1, checkpoint_every=100,
        sample_every=1000, verbose=0, precision="float32", style_warmup=0.0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def photo_batches(count=3, batch=4):
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32") for _ in range(count)]


def slot_losses(model, config, images):
    """Each slot's own loss on fixed photos: pixel error for slot 0, the perceptual
    total against its painting for the others."""
    from ml.trainer import build_perceptual_loss

    loss = build_perceptual_loss(config)
    n = len(images)
    losses = {}
    for slot in range(model.num_styles):
        stylized = np.asarray(model(images, bank.one_hot([slot] * n, model.num_styles)))
        if slot == 0:
            losses[slot] = float(np.mean((stylized - images) ** 2))
        else:
            losses[slot] = float(loss(images, stylized, style_index=np.full(n, slot - 1))["total"])
    return losses


def test_joint_training_of_a_tiny_bank_lowers_every_slots_loss(paintings, tmp_path):
    config = bank_config(tmp_path / "bank", paintings=tuple(paintings), steps=40, lr=1e-2)
    images = photo_batches(1)[0]
    start = train(config.replace(steps=1, out_dir=str(tmp_path / "start")), dataset=[images])
    trained = train(config, dataset=[images])
    assert trained.model.num_styles == 3 and "identity" in trained.final_losses
    before = slot_losses(start.model, config, images)
    after = slot_losses(trained.model, config, images)
    for slot in range(3):
        assert after[slot] < 0.8 * before[slot], (slot, before, after)


def test_slot_sampler_is_seeded_per_step():
    sampler = SlotSampler([0, 1, 2], seed=5)
    assert np.array_equal(sampler(7, 16), sampler(7, 16))
    assert not np.array_equal(sampler(7, 16), sampler(8, 16))
    assert set(sampler(1, 200)) == {0, 1, 2}


def test_fine_tuning_one_slot_leaves_every_other_slot_bit_identical(paintings, tmp_path):
    start = tiny_bank(3)
    start.save(tmp_path / "bank.keras")
    x = noise_batch(2)
    before = {slot: np.asarray(start(x, bank.one_hot([slot] * 2, 3))) for slot in range(3)}

    config = bank_config(tmp_path / "tune", painting=paintings[1], train_slot=2,
                         init_weights=str(tmp_path / "bank.keras"), steps=3, lr=1e-2)
    tuned = train(config, dataset=photo_batches(1)).model

    after = {slot: np.asarray(tuned(x, bank.one_hot([slot] * 2, 3))) for slot in range(3)}
    from ml.trainer import build_trainer

    trainer = build_trainer(config)
    norms = {v.path for layer in bank.style_norms(trainer.transform_net) for v in layer.weights}
    assert trainer.transform_net.trainable_variables  # the norms train ...
    assert {v.path for v in trainer.transform_net.trainable_variables} == norms  # ... only
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert np.abs(after[2] - before[2]).mean() > 0.01  # the tuned slot did learn


def test_fine_tuning_the_next_slot_adds_a_style(paintings, tmp_path):
    start = tiny_bank(3)
    start.save(tmp_path / "bank.keras")
    config = bank_config(tmp_path / "add", painting=paintings[0], train_slot=3,
                         init_weights=str(tmp_path / "bank.keras"), steps=2)
    added = train(config, dataset=photo_batches(1)).model
    assert added.num_styles == 4
    x = noise_batch(1)
    np.testing.assert_array_equal(np.asarray(added(x, bank.one_hot([1], 4))),
                                  np.asarray(start(x, bank.one_hot([1], 3))))
    with pytest.raises(ValueError, match="at most 3"):
        train(config.replace(train_slot=5, out_dir=str(tmp_path / "gap")), dataset=photo_batches(1))


def test_a_slot_cannot_start_from_a_network_that_is_no_bank(paintings, tmp_path):
    """A saved network of fewer than two slots (as the single-style networks were) does
    not load as a bank: the run says so rather than failing somewhere inside Keras."""
    import zipfile

    from ml.bank_plan import bank_plan

    tiny_bank(2).save(tmp_path / "lone.keras")
    with zipfile.ZipFile(tmp_path / "lone.keras") as source, \
            zipfile.ZipFile(tmp_path / "old.keras", "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                saved = json.loads(data)
                assert saved["config"]["num_styles"] == 2
                saved["config"]["num_styles"] = 1
                data = json.dumps(saved).encode()
            target.writestr(item, data)
    lone = bank_config(tmp_path / "tune", painting=paintings[0], train_slot=1,
                       init_weights=str(tmp_path / "lone.keras"))
    assert bank_plan(lone).num_styles == 2  # the untouched file is a bank
    with pytest.raises(ValueError, match="old.keras cannot be loaded as a bank"):
        bank_plan(lone.replace(init_weights=str(tmp_path / "old.keras")))


def test_train_slot_needs_a_bank_to_start_from(paintings):
    with pytest.raises(ValueError, match="needs init_weights"):
        bank_config("out", painting=paintings[0], train_slot=1)
    with pytest.raises(ValueError, match="either paintings"):
        bank_config("out", paintings=tuple(paintings), train_slot=1, init_weights=paintings[0])


# --------------------------------------------------------------------------- export


def test_bank_export_takes_style_weights_and_lists_its_slots(tmp_path):
    net = tiny_bank(3)
    slots = [{"slug": None, "identity": True}, {"slug": "red"}, {"slug": "blue"}]
    version, path = export_savedmodel(net, tmp_path / "bank", slots=slots)
    assert version == 1
    assert (path / BANK_MODEL_FILE).is_file()
    listed = read_slots(path)
    assert listed["num_styles"] == 3 and [s["slot"] for s in listed["slots"]] == [0, 1, 2]
    assert listed["slots"][2]["slug"] == "blue"
    assert json.loads((path / SLOTS_FILE).read_text()) == listed

    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = signature.structured_input_signature[1]
    assert specs["images"].dtype == tf.uint8 and specs["style_weights"].dtype == tf.float32
    assert specs["style_weights"].shape.as_list() == [None, 3]
    assert signature.structured_outputs["stylized"].dtype == tf.uint8

    stylize = load_savedmodel_fn(path)
    images = noise_batch(2).astype(np.uint8)
    weights = bank.one_hot([1, 2], 3)
    out = stylize(images, weights)
    expected = np.clip(np.round(np.asarray(net(images.astype("float32"), weights))), 0, 255)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.abs(out.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(stylize(images[1:], weights[1]), out[1:])  # one row for all
    with pytest.raises(TypeError):
        stylize(images)  # the weights are no option
    with pytest.raises(ValueError, match="has 3 slots: give style_weights"):
        stylize(images, None)
    with pytest.raises(ValueError, match="shape"):
        stylize(images, np.ones((2, 4), "float32"))


def test_a_bank_export_needs_one_description_per_slot(tmp_path):
    with pytest.raises(ValueError, match="3 slot descriptions"):
        export_savedmodel(tiny_bank(3), tmp_path / "bank", slots=[{}, {}])


def test_the_command_line_adds_a_slot_to_a_saved_bank_in_a_fresh_process(paintings, tmp_path):
    import subprocess
    import sys

    tiny_bank(3).save(tmp_path / "bank.keras")
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for i in range(2):
        Image.fromarray(noise_batch(1, 40, seed=i)[0].astype(np.uint8)).save(photo_dir / f"{i}.png")
    done = subprocess.run(
        [sys.executable, "-m", "ml.train", "--init-weights", str(tmp_path / "bank.keras"),
         "--train-slot", "3", "--style", paintings[0], "--data", str(photo_dir),
         "--out", str(tmp_path / "run"), "--steps", "1", "--size", "32", "--batch", "2",
         "--loss-weights", "random", "--precision", "float32"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert keras.saving.load_model(tmp_path / "run" / "transform_net.keras").num_styles == 4


def test_identity_examples_do_not_dilute_the_style_term(paintings, tmp_path):
    from ml.trainer import build_trainer

    config = bank_config(tmp_path / "b", paintings=tuple(paintings))
    trainer = build_trainer(config)
    images = noise_batch(2, SIZE)
    stylized = np.asarray(trainer((images, np.array([1, 0], np.int32))))
    trainer.compute_loss(x=(images, np.array([1, 0], np.int32)), y=np.ones(2, "float32"),
                         y_pred=stylized)
    mixed = float(trainer.trackers["style"].result())
    assert float(trainer.trackers["identity"].result()) > 0
    trainer.compute_loss(x=(images[:1], np.array([1], np.int32)), y=np.ones(1, "float32"),
                         y_pred=stylized[:1])
    alone = float(trainer.trackers["style"].result())
    assert mixed == pytest.approx(alone, rel=1e-4)


def test_a_paintings_style_scale_multiplies_its_style_term_only(paintings, tmp_path):
    from ml.trainer import build_trainer

    images = noise_batch(2, SIZE)
    slots = np.array([1, 2], np.int32)
    styles = {}
    for scales in ((), (3.0, 1.0)):
        keras.utils.set_random_seed(5)  # the same random VGG for both
        trainer = build_trainer(bank_config(tmp_path / "b", paintings=tuple(paintings),
                                            painting_style_scales=scales))
        if not styles:
            weights = trainer.transform_net.get_weights()
        trainer.transform_net.set_weights(weights)
        stylized = np.asarray(trainer((images, slots)))
        per_slot = []
        for i, slot in enumerate(slots):
            trainer.compute_loss(x=(images[i:i + 1], np.array([slot], np.int32)),
                                 y=np.ones(1, "float32"), y_pred=stylized[i:i + 1])
            per_slot.append(float(trainer.trackers["style"].result()))
        styles[scales] = per_slot
    assert styles[(3.0, 1.0)][0] == pytest.approx(3 * styles[()][0], rel=1e-4)
    assert styles[(3.0, 1.0)][1] == pytest.approx(styles[()][1], rel=1e-4)


def test_fine_tuning_a_slot_of_a_robust_bank_keeps_its_robust_norms(paintings, tmp_path):
    from ml.bank_plan import bank_plan
    from ml.model import TransformNet

    start = TransformNet(width=0.125, num_residual_blocks=1, num_styles=3, norm_clip_z=6.0)
    start(noise_batch(1), bank.one_hot([1], 3))
    start.save(tmp_path / "robust.keras")
    config = bank_config(tmp_path / "tune", painting=paintings[0], train_slot=2,
                         init_weights=str(tmp_path / "robust.keras"))
    plan = bank_plan(config)
    assert plan.applied_to(config).norm_clip_z == 6.0  # the plan file said nothing of it


def test_a_new_slot_learns_with_the_loss_settings_the_banks_slots_record():
    slots = {"num_styles": 3, "slots": [
        {"slug": None, "identity": True, "settings": {"style_weight": 99.0}},
        {"slug": "a", "settings": {"style_weight": 16.0, "content_weight": 6.0,
                                   "light_size": 32, "shadow_weight": None, "lr": 0.002,
                                   "steps": 30000, "width": 0.5}},
        {"slug": "b", "settings": {"style_weight": 1.0}},
    ]}
    # The first painted slot's loss terms only: no schedule, no shape, no missing value.
    assert bank.slot_loss_settings(slots) == {
        "style_weight": 16.0, "content_weight": 6.0, "light_size": 32}
    assert bank.slot_loss_settings(slots, style_scale=3.0)["style_weight"] == 48.0
    assert bank.slot_loss_settings({"slots": [{"slug": "a"}]}) == {}
    assert bank.slot_loss_settings({}) == {}


def test_a_bank_slot_builds_every_kind_of_styles_inputs():
    """``BankSlot.inputs``: a bank's slot gets its weights row (strength in the network),
    an own style its row times its share, a lone style (a bank of the identity and
    itself) its weights row too; nothing is left to the pixels; only slots of one
    network mix."""
    assert [field.name for field in dataclasses.fields(PaintInputs)] == [
        "style_weights", "style_params"]
    wave = BankSlot("paintings", 3, 4, 2)
    starry = BankSlot("paintings", 3, 4, 1)
    painted = wave.inputs(strength=0.6, blend_with=starry, blend=0.25)
    np.testing.assert_allclose(painted.style_weights, [0.4, 0.15, 0.45, 0.0])
    assert painted.style_params is None

    row = np.arange(6, dtype=np.float32)
    own = BankSlot("paintings", 3, 4, row=row)
    mine = own.inputs(strength=0.5, blend_with=starry, blend=0.5)
    np.testing.assert_allclose(mine.style_weights, [0.5, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(mine.style_params, 0.25 * row)

    lone = BankSlot("lone", 7, 2, 1)
    alone = lone.inputs(strength=0.3)
    assert alone.style_weights.dtype == np.float32
    np.testing.assert_allclose(alone.style_weights, [0.7, 0.3])
    assert alone.style_params is None
    np.testing.assert_allclose(lone.inputs().style_weights, [0.0, 1.0])

    # Calls: slots of one version together, own rows apart, other networks apart.
    assert wave.call_key == starry.call_key != own.call_key != lone.call_key
    assert own.mixes_with(starry) and not starry.mixes_with(own)
    for a, b in ((lone, starry), (starry, lone), (wave, BankSlot("other", 1, 4, 2)),
                 (own, BankSlot("paintings", 3, 9, 6)), (lone, BankSlot("lone", 7, 2, 0))):
        with pytest.raises(CannotMix):
            a.inputs(blend_with=b, blend=0.5)
    for bad in (-0.1, 1.5, float("nan")):
        for slot in (wave, own, lone):
            with pytest.raises(ValueError):
                slot.inputs(strength=bad)
