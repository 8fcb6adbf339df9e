import json
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from stylize.services.accounts import account_ensure

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
        for username, fields in ACCOUNTS.items():
            new_password = username not in logins
            password = logins.setdefault(username, secrets.token_urlsafe(12))
            account_ensure(username=username, password=password, reset_password=new_password,
                           **fields)
        logins_file.parent.mkdir(parents=True, exist_ok=True)
        logins_file.write_text(json.dumps(logins, indent=2))
        logins_file.chmod(0o600)
        self.stdout.write(
            f"Demo login:  demo / {logins['demo']}\n"
            f"Staff login: admin / {logins['admin']}  (admin at /admin/)"
        )
