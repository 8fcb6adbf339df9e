"""The short version of `make loadtest`: jobs from several API clients on a real stack
(Redis, two workers, beat, web, a gRPC model server) while a worker is SIGKILLed,
Redis restarts and the model server goes down; nothing may be lost or done twice."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import BASE_DIR, PRODUCT_SETTINGS

SHIPPED = any((BASE_DIR / "serving" / "models").glob("*/*/saved_model.pb"))


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no shipped model to stylize with")
def test_the_short_load_run_loses_nothing_under_faults():
    run = subprocess.run(
        [sys.executable, "-m", "bench.loadtest", "--jobs", "16", "--clients", "4",
         "--users", "2", "--big-jobs", "4", "--big-side", "3072", "--outage", "4",
         "--fault-delay", "2", "--timeout", "300"],
        # The stack runs on its own database and settings, as `make loadtest` does.
        cwd=BASE_DIR, env={**os.environ, "DJANGO_SETTINGS_MODULE": PRODUCT_SETTINGS},
        capture_output=True, text=True, timeout=600,
    )
    output = run.stdout
    assert run.returncode == 0, output[-3000:] + run.stderr[-3000:]
    assert "faults: worker small SIGKILLed and restarted, Redis restarted, model server down" \
        in output
    assert "lost: []" in output and "successes without their file: []" in output
    assert "jobs without exactly one: []" in output and "0 × 5xx" in output
    assert "OK: nothing lost, nothing done twice, one email per job." in output

    # Fairness on the stack's own worker processes (one per queue): another user's
    # 1 MP job finished while some of one user's 9 MP jobs were still waiting.
    fair = re.search(r"finished (\d+\.\d) s after its upload while (\d+) of", output)
    assert fair, output[-2000:]
    assert float(fair.group(1)) < 30 and int(fair.group(2)) >= 1, fair.group(0)
