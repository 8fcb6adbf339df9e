"""``manage.py stylize``: paint photos in a style without the queue.

One photo: ``manage.py stylize photo.jpg --style starry-night [-o out.jpg]``. Several
photos or folders: ``manage.py stylize a.jpg b.png photos/ --style starry-night
--out-dir painted/`` writes ``painted/<photo name>.png`` for each. Every photo goes
through the product's own path (``stylize.services.stylizing.photo_stylize``: tiling, the
configured backend, post-processing) in this one process, the model loaded once.
A photo that cannot be read or painted is reported and skipped; the command then
exits non-zero once the others are done.

``--stroke fine|medium|bold`` picks the brush-stroke size; ``--blend-with SLUG`` mixes
in a second style of the same bank, ``--blend`` being its share (0.5 when left out).
Both go through the same check as a job (``stylize.services.jobs.job_mix_clean``).
"""

import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, UnidentifiedImageError

from stylize.backends.base import BackendError
from stylize.imaging.encoding import encode_image
from stylize.imaging.loading import load_photo
from stylize.management.lookups import style_or_command_error
from stylize.models import DEFAULT_MAX_SIDE, DEFAULT_STROKE, MAX_MAX_SIDE, MIN_MAX_SIDE, Stroke
from stylize.services.jobs import job_mix_clean
from stylize.services.stylizing import photo_stylize

#: Files of a folder that are taken as photos (named files are always tried).
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class Command(BaseCommand):
    help = (
        "Repaint photos in a style through the configured model backend, without the "
        "queue (the same pre- and post-processing as a job). One photo, or several "
        "photos and folders with --out-dir (one PNG per photo, named after it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("photos", nargs="+", type=Path,
                            help="photo files and/or folders of photos (not recursive)")
        parser.add_argument("--style", required=True, help="the style's slug")
        parser.add_argument("-o", "--output", type=Path,
                            help="one photo only: where to write the JPEG/PNG "
                                 "(default PHOTO-SLUG.jpg beside the photo)")
        parser.add_argument("--out-dir", type=Path,
                            help="write DIR/<photo name>.png for every photo (created if missing)")
        parser.add_argument("--strength", type=float, default=1.0, help="0 = photo, 1 = painting")
        parser.add_argument("--preserve-colors", action="store_true",
                            help="keep the photo's colours, take the painting's strokes")
        parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
        parser.add_argument("--stroke", default=DEFAULT_STROKE,
                            help=f"brush strokes: {', '.join(Stroke.values)} "
                                 f"(default {DEFAULT_STROKE})")
        parser.add_argument("--blend-with", metavar="SLUG",
                            help="a second style of the same bank to mix in")
        parser.add_argument("--blend", type=float,
                            help="the second style's share, 0 to 1 (default 0.5 with "
                                 "--blend-with)")

    def handle(self, *args, **options):
        if not 0.0 <= options["strength"] <= 1.0:
            raise CommandError("--strength must be between 0 and 1.")
        if not MIN_MAX_SIDE <= options["max_side"] <= MAX_MAX_SIDE:
            raise CommandError(f"--max-side must be between {MIN_MAX_SIDE} and {MAX_MAX_SIDE}.")
        out_dir, output = options["out_dir"], options["output"]
        if out_dir and output:
            raise CommandError("Give either -o/--output (one photo) or --out-dir, not both.")
        photos = _photo_list(options["photos"])
        single = len(photos) == 1 and not options["photos"][0].is_dir()
        if not single and out_dir is None:
            raise CommandError("Several photos or a folder need --out-dir DIR.")
        if out_dir is not None:
            _check_unique_names(photos)
            if out_dir.exists() and not out_dir.is_dir():
                raise CommandError(f"--out-dir {out_dir} is not a folder.")
            out_dir.mkdir(parents=True, exist_ok=True)
        style = style_or_command_error(options["style"])
        if style.live_version is None:
            raise CommandError(f"The style {style.name} has no trained model yet.")
        try:
            mix = job_mix_clean(style=style, blend_with=options["blend_with"],
                                blend=options["blend"], stroke=options["stroke"])
        except ValidationError as error:
            raise CommandError(" ".join(
                f"--{field.replace('_', '-')}: {message}"
                for field, messages in error.message_dict.items() for message in messages
            )) from None

        failures, started_all = [], time.perf_counter()
        for photo_path in photos:
            if out_dir is not None:
                target = out_dir / f"{photo_path.stem}.png"
            else:
                target = output or photo_path.with_name(f"{photo_path.stem}-{style.slug}.jpg")
            try:
                self._paint_one(photo_path, target, style, mix, options)
            except CommandError as error:
                if single:
                    raise
                failures.append(photo_path)
                self.stderr.write(f"Skipped {photo_path}: {error}")
        if failures:
            raise CommandError(
                f"{len(failures)} of {len(photos)} photos could not be painted: "
                + ", ".join(str(path) for path in failures)
            )
        if not single:
            self.stdout.write(f"{len(photos)} photos painted in "
                              f"{time.perf_counter() - started_all:.1f} s into {out_dir}")

    def _paint_one(self, photo_path: Path, output: Path, style, mix, options) -> None:
        try:
            photo = load_photo(photo_path, max_side=options["max_side"])
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise CommandError(f"Cannot read {photo_path} as an image: {exc}") from exc
        started = time.perf_counter()
        try:
            result = photo_stylize(photo=photo, style=style, strength=options["strength"],
                                   preserve_colors=options["preserve_colors"],
                                   stroke=mix.stroke, blend_with=mix.blend_with, blend=mix.blend)
        except BackendError as exc:
            raise CommandError(f"Cannot paint {photo_path}: {exc}") from exc
        seconds = time.perf_counter() - started
        fmt = "PNG" if output.suffix.lower() == ".png" else "JPEG"
        try:
            output.write_bytes(encode_image(result, format=fmt))
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc}") from exc
        height, width = result.shape[:2]
        self.stdout.write(f"{output} ({width}×{height}, {seconds:.2f} s)")


def _photo_list(paths: list[Path]) -> list[Path]:
    """Named files as given (even unreadable ones: they are reported), folders expanded."""
    photos = []
    for path in paths:
        if path.is_dir():
            photos += sorted(child for child in path.iterdir()
                             if child.is_file() and child.suffix.lower() in PHOTO_SUFFIXES
                             and not child.name.startswith("."))
        else:
            photos.append(path)
    if not photos:
        raise CommandError(f"No photos in {', '.join(str(path) for path in paths)}.")
    return photos


def _check_unique_names(photos: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for photo in photos:
        other = seen.setdefault(photo.stem, photo)
        if other != photo:
            raise CommandError(f"{other} and {photo} would both be written as {photo.stem}.png.")
