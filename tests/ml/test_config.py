"""One TrainConfig: presets, precedence, and the flags derived from its fields."""

import argparse
import dataclasses

import pytest

from ml.config import (
    DEFAULT_PRESET,
    FIELD_NAMES,
    FLAG_FIELDS,
    PRESETS,
    TrainConfig,
    add_arguments,
    config_from_args,
)
from ml.train import build_parser, parse_args

REQUIRED = ["--style", "p.jpg", "--data", "photos", "--out", "runs/p"]


def test_every_preset_is_a_valid_config_and_the_default_is_one_of_them():
    assert DEFAULT_PRESET in PRESETS
    for name, values in PRESETS.items():
        config = TrainConfig.from_preset(name)
        assert config.preset == name
        for field_name, value in values.items():
            assert getattr(config, field_name) == value


def test_presets_differ_in_the_network_and_share_the_recipe():
    fast, johnson = TrainConfig.from_preset("fast"), TrainConfig.from_preset("johnson")
    assert (fast.width, fast.num_residual_blocks, fast.output_kernel_size) == (0.5, 3, 3)
    assert (johnson.width, johnson.num_residual_blocks, johnson.output_kernel_size) == (1.0, 5, 9)
    assert fast.loss_network == johnson.loss_network == "vgg16"


def test_precedence_preset_then_overrides_then_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "johnson", "--steps", "7"])
    config = config_from_args(args, steps=50, width=0.75, content_weight=3.0)
    assert config.preset == "johnson"
    assert config.num_residual_blocks == 5  # from the preset
    assert config.width == 0.75 and config.content_weight == 3.0  # overrides over the preset
    assert config.steps == 7  # the flag over the override


def test_a_flag_not_given_keeps_the_override_not_the_dataclass_default():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args([]), steps=123)
    assert config.steps == 123 and config.preset == DEFAULT_PRESET


def test_every_flag_field_is_a_flag_of_python_m_ml_train():
    actions = {action.dest: action for action in build_parser()._actions}
    for spec in FLAG_FIELDS:
        assert spec.name in actions, spec.name
        assert spec.metadata["flag"] in actions[spec.name].option_strings


def test_python_m_ml_train_maps_every_recipe_flag():
    config = parse_args([
        *REQUIRED, "--preset", "balanced", "--style-size", "300", "--style-layer-weights",
        "1,2,3,4", "--precision", "float32", "--no-augment", "--clipnorm", "5",
        "--loss-weights", "random", "--content-weight", "2", "--style-size-factor", "2",
    ])
    assert config.preset == "balanced" and config.num_residual_blocks == 5
    assert config.style_size == 300 and config.painting_size == 300
    assert config.style_layer_weights == (1.0, 2.0, 3.0, 4.0)
    assert (config.precision, config.augment, config.clipnorm) == ("float32", False, 5.0)
    assert config.loss_weights is None and config.content_weight == 2.0


def test_painting_size_defaults_to_a_multiple_of_the_crop():
    assert TrainConfig(size=256).painting_size == 384
    assert TrainConfig(size=128, style_size_factor=2.0).painting_size == 256
    assert TrainConfig(size=128, style_size=200).painting_size == 200


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "--steps: must be a whole number >= 1"),
    (["--style-layer-weights", "1,x"], "--style-layer-weights: must be comma-separated"),
    (["--precision", "float8"], "invalid choice"),
    (["--preset", "huge"], "invalid choice"),
    (["--width", "-1"], "--width: must be a number > 0"),
    (["--style-warmup", "1.5"], "--style-warmup: must be a number from 0 to 1"),
    (["--max-scale", "0"], "--max-scale: must be a number > 0"),
])
def test_bad_flags_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit):
        parse_args([*REQUIRED, *flags])
    assert message in capsys.readouterr().err


def test_missing_painting_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--data", "d", "--out", "o"])
    assert "--style" in capsys.readouterr().err


@pytest.mark.parametrize("values, message", [
    ({"steps": 0}, "steps"),
    ({"precision": "int8"}, "precision"),
    ({"output_kernel_size": 4}, "output_kernel_size"),
    ({"loss_network": "resnet"}, "loss_network"),
    ({"clipnorm": 0}, "clipnorm"),
])
def test_config_validates_in_code_too(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_from_preset_refuses_unknown_presets_and_settings():
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.from_preset("huge")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_preset(residual_blocks=3)  # the field is num_residual_blocks


def test_as_dict_round_trips_through_json():
    import json

    config = TrainConfig.from_preset("balanced", style_layer_weights=(1, 2, 3, 4), steps=9)
    again = TrainConfig(**json.loads(json.dumps(config.as_dict())))
    assert again == config
    assert set(config.as_dict()) == FIELD_NAMES == {f.name for f in dataclasses.fields(TrainConfig)}
