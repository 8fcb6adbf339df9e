from django.conf import settings
from django.core.management.base import BaseCommand

from stylize.services.serving import serving_config_write
from stylize.services.styles import styles_register_shipped


class Command(BaseCommand):
    help = (
        "Register every style shipped under serving/models/ as a ready public style and "
        "rewrite serving/models.config to list every live version."
    )

    def handle(self, *args, **options):
        styles = styles_register_shipped(serving_dir=settings.SERVING_DIR)
        for style in styles:
            self.stdout.write(f"  {style.name} (version {style.live_version})")
        serving_config_write()
        self.stdout.write(self.style.SUCCESS(f"{len(styles)} shipped style(s) registered."))
