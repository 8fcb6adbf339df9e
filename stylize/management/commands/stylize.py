import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from PIL import UnidentifiedImageError

from stylize.backends.base import BackendError
from stylize.imaging import encode_image, load_photo
from stylize.management.lookups import style_or_command_error
from stylize.models import DEFAULT_MAX_SIDE, MAX_MAX_SIDE, MIN_MAX_SIDE
from stylize.stylizing import photo_stylize


class Command(BaseCommand):
    help = (
        "Repaint one photo in a style through the configured model backend, without the "
        "queue (the same pre- and post-processing as a job)."
    )

    def add_arguments(self, parser):
        parser.add_argument("photo", type=Path)
        parser.add_argument("--style", required=True, help="the style's slug")
        parser.add_argument("-o", "--output", type=Path,
                            help="where to write the JPEG/PNG (default PHOTO-SLUG.jpg)")
        parser.add_argument("--strength", type=float, default=1.0, help="0 = photo, 1 = painting")
        parser.add_argument("--preserve-colors", action="store_true",
                            help="keep the photo's colours, take the painting's strokes")
        parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)

    def handle(self, *args, **options):
        if not 0.0 <= options["strength"] <= 1.0:
            raise CommandError("--strength must be between 0 and 1.")
        if not MIN_MAX_SIDE <= options["max_side"] <= MAX_MAX_SIDE:
            raise CommandError(f"--max-side must be between {MIN_MAX_SIDE} and {MAX_MAX_SIDE}.")
        style = style_or_command_error(options["style"])
        photo_path = options["photo"]
        output = options["output"] or photo_path.with_name(f"{photo_path.stem}-{style.slug}.jpg")
        try:
            photo = load_photo(photo_path, max_side=options["max_side"])
        except (OSError, UnidentifiedImageError) as exc:
            raise CommandError(f"Cannot read {photo_path} as an image: {exc}")
        started = time.perf_counter()
        try:
            result = photo_stylize(photo=photo, style=style, strength=options["strength"],
                                   preserve_colors=options["preserve_colors"])
        except BackendError as exc:
            raise CommandError(str(exc))
        seconds = time.perf_counter() - started
        fmt = "PNG" if output.suffix.lower() == ".png" else "JPEG"
        output.write_bytes(encode_image(result, format=fmt))
        height, width = result.shape[:2]
        self.stdout.write(f"{output} ({width}×{height}, {seconds:.2f} s)")
