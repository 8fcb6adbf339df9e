"""The short version of `make loadtest`: jobs from several API clients on a real stack
(Redis, two workers, beat, web, a gRPC model server) while a worker is SIGKILLed,
Redis restarts and the model server goes down; nothing may be lost or done twice."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import BASE_DIR, PRODUCT_SETTINGS

SHIPPED = any((BASE_DIR / "serving" / "models").glob("*/*/saved_model.pb"))


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped model to stylize with")
def test_the_short_load_run_loses_nothing_under_faults(tmp_path):
    outcome = tmp_path / "loadtest.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.loadtest", "--jobs", "16", "--clients", "4",
         "--users", "2", "--big-jobs", "4", "--big-side", "3072", "--outage", "4",
         "--fault-delay", "2", "--timeout", "300", "--json", str(outcome)],
        # The stack runs on its own database and settings, as `make loadtest` does.
        cwd=BASE_DIR, env={**os.environ, "DJANGO_SETTINGS_MODULE": PRODUCT_SETTINGS},
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(outcome.read_text())
    assert result["faults"] == ["worker small SIGKILLed and restarted", "Redis restarted",
                                "model server down for 4 s"]
    assert result["lost"] == [] and result["without_file"] == []
    assert result["email_mismatches"] == [] and result["server_errors"] == 0
    assert result["unexplained_failures"] == 0 and result["ok"]

    # Fairness on the stack's own worker processes (one per queue): another user's
    # 1 MP job finished while some of one user's 9 MP jobs were still waiting.
    fairness = result["fairness"]
    assert fairness["small_seconds"] < 30 and fairness["big_waiting"] >= 1, fairness
