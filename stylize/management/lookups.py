from django.core.management.base import CommandError

from stylize.models import Style


def style_or_command_error(slug: str) -> Style:
    """The style with this slug, or the error a management command should exit with."""
    try:
        return Style.objects.get(slug=slug)
    except Style.DoesNotExist:
        raise CommandError(f"No style with slug {slug!r}.") from None
