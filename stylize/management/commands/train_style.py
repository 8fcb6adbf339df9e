from django.core.management.base import BaseCommand, CommandError

from ml.config import add_arguments, given_flags
from stylize.management.lookups import style_or_command_error
from stylize.services.training import style_train, training_config


class Command(BaseCommand):
    help = (
        "Train a style on a folder of photos, export the next version under serving/models/ "
        "and make it live. A style in a bank fine-tunes only its slot (the other styles' "
        "outputs stay the same); a new style joins settings.DEFAULT_BANK when that bank "
        "is live, else gets its own network. Every ml.config.TrainConfig setting is a "
        "flag; unset flags come from settings.TRAINING_OVERRIDES, then the preset."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the style to train")
        # The painting, the run folder and any bank slot come from the style.
        add_arguments(parser, base=training_config(),
                      skip=("painting", "out_dir", "paintings", "train_slot"))

    def handle(self, *args, **options):
        style = style_or_command_error(options["slug"])
        try:
            style = style_train(style=style, overrides=given_flags(options))
        except Exception as exc:
            raise CommandError(f"Training {style.name} failed: {exc}") from exc
        done = style.training_settings
        self.stdout.write(self.style.SUCCESS(
            f"{style.name}: version {style.live_version} is live "
            f"({done['steps_done']} steps in {done['seconds']} s, {done['precision']})."
        ))
