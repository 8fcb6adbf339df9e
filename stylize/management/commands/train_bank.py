from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from ml.config import add_arguments, given_flags
from stylize.management.lookups import style_or_command_error
from stylize.services.training import bank_train, training_config


class Command(BaseCommand):
    help = (
        "Train a bank: one conditional network for several styles (its current members "
        "plus --styles), export it as the bank's next version under serving/models/BANK/ "
        "and make it live for all of them. Every ml.config.TrainConfig setting is a flag; "
        "unset flags come from settings.TRAINING_OVERRIDES, then the preset."
    )

    def add_arguments(self, parser):
        parser.add_argument("bank", help="the bank's model name (TF Serving's name for it)")
        parser.add_argument("--styles", default="", metavar="SLUG,SLUG,...",
                            help="styles to train into the bank (new ones take the next slots)")
        # Paintings, folders and slots come from the styles and the bank.
        add_arguments(parser, base=training_config(),
                      skip=("painting", "out_dir", "paintings", "train_slot", "init_weights"))

    def handle(self, *args, **options):
        try:
            validate_slug(options["bank"])
        except ValidationError:
            raise CommandError(f"A bank's name is a slug (letters, digits, - and _), "
                               f"not {options['bank']!r}.") from None
        styles = [style_or_command_error(slug.strip())
                  for slug in options["styles"].split(",") if slug.strip()]
        try:
            trained = bank_train(model_name=options["bank"], styles=styles,
                                 overrides=given_flags(options))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:
            raise CommandError(f"Training the bank {options['bank']} failed: {exc}") from exc
        done = trained[0].training_settings
        listed = ", ".join(f"{s.bank_index}: {s.name}" for s in trained)
        self.stdout.write(self.style.SUCCESS(
            f"Bank {options['bank']} version {trained[0].live_version} is live for {listed} "
            f"({done['steps_done']} steps in {done['seconds']} s, {done['precision']})."
        ))
