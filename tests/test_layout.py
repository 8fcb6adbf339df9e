"""The code's layout: neither ``stylize`` nor ``ml`` has an import cycle, counting
imports inside functions too (only ``if TYPE_CHECKING:`` blocks are left out); ``ml``
knows nothing of the site and nothing run by the site or ``ml`` imports ``tools``; the web
process never loads TensorFlow; a constant shared by both sides has one home."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env

BASE_DIR = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(BASE_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def _imported(module: str, path: Path, node) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (anywhere in its body)."""
    paths = {_module_name(path): path for path in (BASE_DIR / package).rglob("*.py")
             if "migrations" not in path.parts}
    graph = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        graph[module] = {
            name for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped
            for name in _imported(module, path, node)
            if name in paths and name != module
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph("stylize")
    assert "stylize.services.training" in graph["stylize.tasks"]
    assert "stylize.backends" in graph["stylize.services.serving"]  # imported in a function


def test_stylize_has_no_import_cycle():
    assert cycles(import_graph("stylize")) == []


def test_ml_has_no_import_cycle():
    assert cycles(import_graph("ml")) == []


def test_the_models_do_not_import_the_imaging():
    """stylize.models needs only the stroke options (stylize.strokes), not the pixel code
    with Pillow, pillow-heif and NumPy behind it (the package or any of its stages)."""
    graph = import_graph("stylize")
    assert "stylize.imaging.loading" in graph["stylize.validators"]  # the graph sees them
    imaging = {name for name in graph["stylize.models"]
               if name == "stylize.imaging" or name.startswith("stylize.imaging.")}
    assert imaging == set()


def test_the_app_builds_no_style_inputs_itself():
    """A job's model inputs (slot weights, an own style's row) come from
    ``Style.paint_slot`` (``ml.bank.BankSlot``), so no code of the app decides which
    kind of style it paints with (issue 26)."""
    builders = re.compile(r"\b(mix_weights|params_mix|one_hot)\(")
    found = sorted(f"{path.relative_to(BASE_DIR)}:{number}"
                   for path in (BASE_DIR / "stylize").rglob("*.py")
                   for number, line in enumerate(path.read_text().splitlines(), 1)
                   if builders.search(line))
    assert found == []
    paint_slot = (BASE_DIR / "stylize" / "models.py").read_text()
    assert "def paint_slot" in paint_slot and "BankSlot(" in paint_slot  # the rule's premise


# Asking whether a network is a bank, or building a single-style one: the kinds' names
# (``in_bank``, ``is_bank``), a slot count compared with 1, a "one slot" default.
KIND_CHECK = re.compile(r"\b(in_bank|is_bank)\b|num_styles\s*(==|!=|>|<=)\s*1\b"
                        r"|num_styles\s*<\s*2|\bslots\s*==\s*1\b|\"num_styles\",\s*1\)"
                        r"|single.style")


def test_the_kind_check_finds_what_it_looks_for():
    for line in ("if style.in_bank:", "if self.num_styles == 1:", "num_styles > 1 and",
                 'getattr(model, "num_styles", 1)', "if self.slots == 1:",
                 "a single-style model"):
        assert KIND_CHECK.search(line), line
    for line in ("num_styles=13", "if slots == 12:", "bank_index is not None"):
        assert not KIND_CHECK.search(line), line


def test_no_module_outside_the_bank_asks_whether_a_network_is_a_bank():
    """One kind of model (issue 26): every network is a bank, a lone style one of the
    identity and itself, so only ``ml/bank*`` (which checks what it is handed) may ask."""
    found = sorted(
        f"{path.relative_to(BASE_DIR)}:{number}: {line.strip()}"
        for package in ("ml", "stylize", "bench", "prisma_site", "tools")
        for path in (BASE_DIR / package).rglob("*.py")
        if "migrations" not in path.parts and not (package == "ml"
                                                   and path.name.startswith("bank"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if KIND_CHECK.search(line))
    assert found == []


@pytest.mark.parametrize("written, home", [
    ("0.587", "ml/images.py"),  # ITU-R BT.601's luma weights
    ("IMAGE_SUFFIXES = ", "ml/images.py"),
    ("LOSS_NAMES = ", "ml/losses.py"),
    ("STROKE_WORKING_SIDES = ", "stylize/strokes.py"),
    ("DOWNLOAD_CHOICES = ", "stylize/services/job_files.py"),
    ("LOGIN_URL = ", "prisma_site/settings.py"),
])
def test_a_shared_constant_is_written_in_one_place(written, home):
    """Shared by training, the measure, the web's imaging and pages alike: defined once
    and imported everywhere else."""
    homes = sorted(str(path.relative_to(BASE_DIR))
                   for package in ("ml", "stylize", "bench", "prisma_site", "tools")
                   for path in (BASE_DIR / package).rglob("*.py")
                   if written in path.read_text())
    assert homes == [home]


def test_ml_does_not_import_django_or_the_app():
    for module, path in ((_module_name(p), p) for p in (BASE_DIR / "ml").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                 for name in _imported(module, path, node)}
        app_imports = {n for n in names if n.split(".")[0] in ("django", "stylize", "prisma_site")}
        assert not app_imports, module


def test_the_runtime_code_does_not_import_the_tools():
    """``tools/`` (the offline photo curation) is run by hand and by the Makefile; the
    site, its tasks and ``ml`` never depend on it."""
    for package in ("ml", "stylize", "prisma_site"):
        for module, path in ((_module_name(p), p) for p in (BASE_DIR / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            names = {name for node in ast.walk(tree)
                     if isinstance(node, (ast.Import, ast.ImportFrom))
                     for name in _imported(module, path, node)}
            assert not {n for n in names if n.split(".")[0] == "tools"}, module


WEB_PROCESS = """
import sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # every view, the admin and the API
import prisma_site.wsgi
HEAVY = ("tensorflow", "keras", "grpc", "ml.layers", "ml.export")
print(sorted(m for m in HEAVY if m in sys.modules))
# What a starting Celery worker does (prisma_site/celery.py).
from celery.signals import worker_init
worker_init.send(sender=None)
print(sorted(m for m in HEAVY if m in sys.modules))
"""


def test_the_web_process_does_not_load_tensorflow_and_a_worker_does_as_it_starts():
    # Only the worker paints; Django's start-up (apps, tasks, urls) stays light: about
    # 2 s and no TensorFlow, instead of 8 s and its memory in every web process,
    # manage.py command and beat (docs/design/README.md).
    result = subprocess.run([sys.executable, "-c", WEB_PROCESS], env=clean_env(),
                            cwd=BASE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    web, worker = result.stdout.strip().splitlines()[-2:]
    assert web == "[]"
    # The local backend (the default) runs SavedModels in-process; no gRPC client.
    assert worker == "['keras', 'ml.export', 'tensorflow']"
