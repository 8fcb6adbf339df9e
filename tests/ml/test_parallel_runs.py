"""Tests of ml.parallel_runs: the plan file and several runs in child processes."""

import json
import os

import pytest

from ml.parallel_runs import RESULT_PREFIX, load_plan, main
from tests.helpers import BASE_DIR, noise_photos
from tests.helpers import TRAIN_SIZE as SIZE


def write_plan(tmp_path, plan, name="plan.json"):
    path = tmp_path / name
    path.write_text(json.dumps(plan))
    return path


@pytest.fixture
def photos(tmp_path):
    return noise_photos(tmp_path / "photos", 4, seed=5, name="{}")


@pytest.fixture
def tiny_defaults(painting, photos):
    """Plan defaults for runs that train in seconds (random VGG, 32 px, quarter width)."""
    return {
        "painting": str(painting),
        "data_dir": str(photos),
        "steps": 2,
        "size": SIZE,
        "batch": 2,
        "loss_network": "vgg16",
        "loss_weights": None,
        "width": 0.25,
        "num_residual_blocks": 1,
        "output_kernel_size": 3,
        "sample_every": 1000,
    }


@pytest.fixture
def child_python_path(monkeypatch):
    """The child processes run ``python -m ml.parallel_runs``: let them find ``ml`` from any cwd."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(BASE_DIR), os.environ.get("PYTHONPATH")]))
    )


# --------------------------------------------------------------------------- load_plan


def test_load_plan_merges_defaults_under_each_run(tmp_path):
    path = write_plan(tmp_path, {
        "defaults": {"data_dir": "photos", "width": 0.5, "content_weight": 4.0},
        "runs": [
            {"name": "starry", "painting": "starry.jpg", "content_weight": 6.0},
            {"name": "wave", "painting": "wave.jpg", "steps": 300},
        ],
    })
    starry, wave = load_plan(path)

    assert starry["name"] == "starry" and wave["name"] == "wave"
    starry_files = (starry["painting"], starry["data_dir"], starry["width"])
    assert starry_files == ("starry.jpg", "photos", 0.5)
    assert starry["content_weight"] == 6.0  # the run's own setting wins over the default
    assert wave["content_weight"] == 4.0 and wave["steps"] == 300
    assert "steps" not in starry  # unset settings are left to TrainConfig's defaults


def test_load_plan_without_defaults(tmp_path):
    path = write_plan(tmp_path, {"runs": [{"name": "a", "painting": "a.jpg", "data_dir": "d"}]})
    [run] = load_plan(path)
    assert (run["name"], run["painting"], run["data_dir"]) == ("a", "a.jpg", "d")


@pytest.mark.parametrize(
    "runs",
    [
        [{"name": "same", "painting": "a.jpg"}, {"name": "same", "painting": "b.jpg"}],
        [{"name": "sub/dir", "painting": "a.jpg"}],
        [{"name": "", "painting": "a.jpg"}],
        [{"painting": "a.jpg"}],
    ],
    ids=["duplicate", "slash", "empty", "missing"],
)
def test_load_plan_rejects_bad_names(tmp_path, runs):
    path = write_plan(tmp_path, {"defaults": {"data_dir": "d"}, "runs": runs})
    with pytest.raises(ValueError, match="unique name"):
        load_plan(path)


def test_load_plan_rejects_unknown_settings(tmp_path):
    path = write_plan(tmp_path, {
        "defaults": {"data_dir": "d"},
        "runs": [{"name": "a", "painting": "a.jpg", "learning_rate": 0.1}],
    })
    with pytest.raises(ValueError, match=r"run a: unknown settings \['learning_rate'\]"):
        load_plan(path)


def test_load_plan_rejects_unknown_settings_in_the_defaults(tmp_path):
    path = write_plan(tmp_path, {
        "defaults": {"data_dir": "d", "stpes": 10},
        "runs": [{"name": "a", "painting": "a.jpg"}],
    })
    with pytest.raises(ValueError, match="stpes"):
        load_plan(path)


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"steps": 0}, "steps"),
        ({"batch": -1}, "batch"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"loss_network": "resnet"}, "loss_network"),
    ],
)
def test_load_plan_rejects_invalid_train_config_values(tmp_path, setting, match):
    path = write_plan(tmp_path, {
        "defaults": {"data_dir": "d"},
        "runs": [
            {"name": "ok", "painting": "a.jpg"},
            {"name": "bad", "painting": "b.jpg", **setting},
        ],
    })
    with pytest.raises(ValueError, match=match):
        load_plan(path)


def test_load_plan_rejects_a_run_without_a_style_image(tmp_path):
    path = write_plan(tmp_path, {"defaults": {"data_dir": "d"}, "runs": [{"name": "a"}]})
    with pytest.raises(ValueError, match="painting"):
        load_plan(path)


# --------------------------------------------------------------------------- main


def summary_lines(stdout):
    return {summary["name"]: summary for summary in map(json.loads, stdout.strip().splitlines())}


@pytest.mark.slow
def test_main_trains_every_run_in_its_own_folder(
    tmp_path, tiny_defaults, child_python_path, capsys
):
    plan = write_plan(tmp_path, {
        "defaults": tiny_defaults,
        "runs": [{"name": "first"}, {"name": "second", "content_weight": 2.0, "steps": 3}],
    })
    out = tmp_path / "runs"
    # --max-seconds caps every run: both stop after their first step.
    main([str(plan), "--out", str(out), "--parallel", "2", "--max-seconds", "0.001"])

    summaries = summary_lines(capsys.readouterr().out)
    assert set(summaries) == {"first", "second"}
    for name, summary in summaries.items():
        assert summary["ok"] is True and summary["steps"] == 1, summary
        expected_terms = {"total", "content", "style", "tv", "style_block4_conv3"}
        assert set(summary["final_losses"]) >= expected_terms
        run_dir = out / name
        assert (run_dir / "transform_net.keras").is_file()
        assert json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"] == 1
        log = (run_dir / "train.log").read_text().splitlines()
        [result] = [
            json.loads(line[len(RESULT_PREFIX):]) for line in log if line.startswith(RESULT_PREFIX)
        ]
        assert (result["name"], result["steps"]) == (name, 1)
        config = json.loads((run_dir / "config.json").read_text())
        assert config["out_dir"] == str(run_dir) and config["max_seconds"] == 0.001
    assert json.loads((out / "second" / "config.json").read_text())["content_weight"] == 2.0
    assert json.loads((out / "first" / "config.json").read_text())["content_weight"] is None


@pytest.mark.slow
def test_main_names_the_failed_run_and_still_finishes_the_others(
    tmp_path, tiny_defaults, child_python_path, capsys
):
    plan = write_plan(tmp_path, {
        "defaults": tiny_defaults,
        "runs": [
            {"name": "lost", "painting": str(tmp_path / "no-such-painting.jpg")},
            {"name": "fine"},
        ],
    })
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main([str(plan), "--out", str(out), "--parallel", "2"])

    assert exit_info.value.code == "failed runs: lost"
    summaries = summary_lines(capsys.readouterr().out)
    assert summaries["fine"]["ok"] is True and summaries["fine"]["steps"] == 2
    assert (out / "fine" / "transform_net.keras").is_file()
    lost = summaries["lost"]
    assert lost["ok"] is False and lost["returncode"] != 0
    assert "no-such-painting.jpg" in "\n".join(lost["log_tail"])
    assert "no-such-painting.jpg" in (out / "lost" / "train.log").read_text()
    assert not (out / "lost" / "transform_net.keras").exists()


# --------------------------------------------------------------------------- fail early, clean up


def test_load_plan_rejects_an_architecture_the_net_refuses(tmp_path, tiny_defaults):
    plan = write_plan(tmp_path, {"defaults": tiny_defaults,
                                 "runs": [{"name": "even", "output_kernel_size": 4}]})
    with pytest.raises(ValueError, match="output_kernel_size"):
        load_plan(plan)


def test_load_plan_rejects_a_name_that_is_not_a_string(tmp_path, tiny_defaults):
    plan = write_plan(tmp_path, {"defaults": tiny_defaults, "runs": [{"name": 5}]})
    with pytest.raises(ValueError, match="unique name"):
        load_plan(plan)


def test_main_refuses_a_non_positive_time_cap_before_starting_anything(tmp_path, tiny_defaults):
    plan = write_plan(tmp_path, {"defaults": tiny_defaults, "runs": [{"name": "a"}]})
    with pytest.raises(SystemExit):
        main([str(plan), "--out", str(tmp_path / "runs"), "--max-seconds", "0"])
    assert not (tmp_path / "runs").exists()


def test_each_child_gets_its_share_of_gpu_memory(monkeypatch):
    from ml.parallel_runs import child_env

    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    env = child_env(16)
    assert float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) * 16 <= 0.9 + 1e-9
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    assert float(child_env(1)["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == pytest.approx(0.9)


def test_an_interrupted_plan_stops_its_training_processes(tmp_path, tiny_defaults, monkeypatch):
    import subprocess

    from ml import parallel_runs

    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        process = real_popen([os.sys.executable, "-c", "import time; time.sleep(60)"],
                             stdout=kwargs.get("stdout"))
        started.append(process)
        return process

    def interrupt(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel_runs.subprocess, "Popen", popen)
    monkeypatch.setattr(parallel_runs.time, "sleep", interrupt)
    runs = [{"name": "a", **tiny_defaults}, {"name": "b", **tiny_defaults}]
    with pytest.raises(KeyboardInterrupt):
        parallel_runs.run_all(runs, tmp_path / "runs", parallel=2)
    assert len(started) == 2
    assert all(process.poll() is not None for process in started)


def test_load_plan_takes_a_bank_run_and_needs_a_painting_or_paintings(tmp_path):
    path = write_plan(tmp_path, {"defaults": {"data_dir": "d"}, "runs": [
        {"name": "bank", "paintings": ["a.jpg", "b.jpg"]}]})
    [run] = load_plan(path)
    assert run["paintings"] == ["a.jpg", "b.jpg"]
    path = write_plan(tmp_path, {"defaults": {"data_dir": "d"}, "runs": [{"name": "none"}]})
    with pytest.raises(ValueError, match="or paintings"):
        load_plan(path)
