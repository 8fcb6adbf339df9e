from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from stylize.management.lookups import style_or_command_error
from stylize.services.evaluation import style_evaluate


class Command(BaseCommand):
    help = (
        "Evaluate a style's live version on photos it never trained on: print the mean "
        "content, style and TV loss, store them on the style, write a contact sheet."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--images", required=True, type=Path, help="held-out photos")
        parser.add_argument("--sheet", type=Path,
                            help="contact sheet PNG (default var/evaluations/<slug>-v<N>.png)")
        parser.add_argument("--loss-network", choices=["vgg19", "vgg16"],
                            help="default: the one the style was trained with")
        parser.add_argument("--loss-weights", help="default: the ones it was trained with")
        parser.add_argument("--quality-weights",
                            help="VGG16 weights for the quality measures (default: the loss "
                                 "weights when the style trained with VGG16, else imagenet)")
        parser.add_argument("--max-side", type=int, default=512,
                            help="shrink photos to this longer side first")

    def handle(self, *args, **options):
        style = style_or_command_error(options["slug"])
        if style.live_version is None:
            raise CommandError(f"{style.name} has no trained version yet.")
        sheet = options["sheet"] or (
            settings.VAR_DIR / "evaluations" / f"{style.slug}-v{style.live_version}.png"
        )
        sheet.parent.mkdir(parents=True, exist_ok=True)
        heldout = style_evaluate(
            style=style, images_dir=options["images"], sheet_path=sheet,
            loss_network=options["loss_network"], loss_weights=options["loss_weights"],
            quality_weights=options["quality_weights"], max_side=options["max_side"],
        )
        losses = heldout["losses"]
        self.stdout.write(
            f"{style.name} v{heldout['version']} on {heldout['photos']} held-out photos:\n"
            f"  content {losses['content']:.4g}  style {losses['style']:.4g}  "
            f"tv {losses['tv']:.4g}  total {losses['total']:.4g}"
        )
        self.stdout.write(
            "  quality (ml.quality.evaluate_style: photos at 384 px, painting at 256 px):"
        )
        for name, value in heldout["quality"].items():
            self.stdout.write(f"  {name} {value:.4g}")
        self.stdout.write(f"Contact sheet: {sheet}")
