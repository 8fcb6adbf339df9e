from argparse import ArgumentTypeError
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from stylize.management.lookups import style_or_command_error
from stylize.training import TrainingOptions, style_train, training_options_default


class Command(BaseCommand):
    help = (
        "Train a style's transform network on a folder of photos, export it as the next "
        "version under serving/models/ and make it live."
    )

    def add_arguments(self, parser):
        defaults = training_options_default()
        parser.add_argument("slug", help="the style to train")
        parser.add_argument("--data", default=defaults.data_dir,
                            help="folder of training photos, e.g. COCO train2014/ "
                                 f"(default {defaults.data_dir})")
        parser.add_argument("--steps", type=int, default=defaults.steps)
        parser.add_argument("--size", type=int, default=defaults.size,
                            help="training crop size in pixels")
        parser.add_argument("--batch", type=int, default=defaults.batch)
        parser.add_argument("--loss-network", choices=["vgg19", "vgg16"],
                            default=defaults.loss_network)
        parser.add_argument("--loss-weights", default=defaults.loss_weights,
                            help='"imagenet" (downloaded by Keras) or a local weights file, '
                                 "e.g. from python -m ml.weights vgg16-from-onnx")
        parser.add_argument("--content-weight", type=float)
        parser.add_argument("--style-weight", type=float)
        parser.add_argument("--tv-weight", type=float)
        parser.add_argument("--lr", type=float, default=defaults.lr)
        parser.add_argument("--width", type=positive_float, default=defaults.width,
                            help="filter multiplier: 0.5 is the half-width network "
                                 f"(default {defaults.width})")
        parser.add_argument("--residual-blocks", metavar="N", type=non_negative_int,
                            default=defaults.residual_blocks,
                            help="residual blocks at the bottleneck "
                                 f"(default {defaults.residual_blocks})")
        parser.add_argument("--output-kernel", metavar="K", type=odd_int,
                            default=defaults.output_kernel,
                            help="kernel size of the last convolution, odd; Johnson et al. "
                                 f"use 9 (default {defaults.output_kernel})")
        parser.add_argument("--init-weights", metavar="FILE", type=existing_file,
                            help="start from this transform net (.keras or .weights.h5) "
                                 "of the same architecture, e.g. another style's")
        parser.add_argument("--max-seconds", metavar="S", type=positive_float,
                            help="stop after this much training time, with a checkpoint; "
                                 "--steps stays the ceiling")
        parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
        parser.add_argument("--resume", action="store_true",
                            help="continue from the last checkpoint of this style")

    def handle(self, *args, **options):
        style = style_or_command_error(options["slug"])
        training = TrainingOptions.from_dict(
            {**options, "data_dir": options["data"]}
        )
        try:
            style = style_train(style=style, options=training)
        except Exception as exc:
            raise CommandError(f"Training {style.name} failed: {exc}") from exc
        done = style.training_settings
        self.stdout.write(self.style.SUCCESS(
            f"{style.name}: version {style.live_version} is live "
            f"({done['steps_done']} steps in {done['seconds']} s)."
        ))


# Argument types: a bad value is a usage error (a CommandError from call_command)
# before the style is touched, not a failed training run.


def _number(value: str, kind, acceptable, requirement: str):
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not acceptable(number):
        raise ArgumentTypeError(f"must be {requirement}, got {value!r}")
    return number


def positive_float(value: str) -> float:
    return _number(value, float, lambda x: x > 0, "a number > 0")


def non_negative_int(value: str) -> int:
    return _number(value, int, lambda n: n >= 0, "a whole number >= 0")


def odd_int(value: str) -> int:
    return _number(value, int, lambda n: n > 0 and n % 2 == 1, "an odd whole number (1, 3, 5, ...)")


def existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise ArgumentTypeError(f"no such file: {value!r}")
    return str(Path(value).resolve())
