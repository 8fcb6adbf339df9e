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
        parser.add_argument("--width", type=float, default=defaults.width,
                            help="filter multiplier, e.g. 0.5 for the half-width network")
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
