import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

ACCOUNTS = {
    "demo": {"email": "demo@prisma.localhost", "is_staff": False, "is_superuser": False},
    "admin": {"email": "admin@prisma.localhost", "is_staff": True, "is_superuser": True},
}


class Command(BaseCommand):
    help = (
        "Create the local demo and staff accounts (once) and print their logins. "
        "Passwords are generated on first run and kept in var/logins.json."
    )

    def handle(self, *args, **options):
        logins_file = settings.VAR_DIR / "logins.json"
        logins = json.loads(logins_file.read_text()) if logins_file.exists() else {}
        User = get_user_model()
        for username, fields in ACCOUNTS.items():
            new_password = username not in logins
            password = logins.setdefault(username, secrets.token_urlsafe(12))
            user, created = User.objects.get_or_create(username=username, defaults=fields)
            if created or new_password:
                user.set_password(password)
                user.save()
        logins_file.parent.mkdir(parents=True, exist_ok=True)
        logins_file.write_text(json.dumps(logins, indent=2))
        logins_file.chmod(0o600)
        self.stdout.write(
            f"Demo login:  demo / {logins['demo']}\n"
            f"Staff login: admin / {logins['admin']}  (admin at /admin/)"
        )
