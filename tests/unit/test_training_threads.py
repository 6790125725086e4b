"""gbm training uses as many OpenMP threads as the process may run on, or `--threads`.

Each case runs in a child interpreter (an OpenMP runtime reads its settings once, at load) with
OMP_NUM_THREADS unset, and records what threadpoolctl reports for OpenMP while the gbm's real
`fit` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import ConfigError
from models.estimators import training_threads

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import ThreadpoolController
    from models.estimators import make_model
    from models.training import TrainConfig

    seen = []
    real_fit = HistGradientBoostingClassifier.fit
    def recording_fit(self, X, y, *args, **kwargs):
        seen.append([m["num_threads"] for m in ThreadpoolController().info() if m["user_api"] == "openmp"])
        return real_fit(self, X, y, *args, **kwargs)
    HistGradientBoostingClassifier.fit = recording_fit

    cores, threads = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    if cores is not None:
        os.sched_setaffinity(0, set(cores))  # the process is confined after the OpenMP runtime loaded
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    make_model("gbm", 0, threads, max_iter=5).fit(X, y)
    after = [m["num_threads"] for m in ThreadpoolController().info() if m["user_api"] == "openmp"]
    print(json.dumps({"during_fit": seen, "after": after}))
""")


def _openmp_threads(cores: list[int] | None, threads: int | None) -> dict[str, list]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cores), json.dumps(threads)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a process allowed on 2 CPUs")


@needs_two_cpus
def test_gbm_fit_uses_the_cpus_the_process_may_run_on():
    report = _openmp_threads(cores=[min(os.sched_getaffinity(0))], threads=None)
    assert report["during_fit"] and all(t == [1] for t in report["during_fit"] if t)
    assert report["during_fit"][0], "threadpoolctl found no OpenMP runtime in scikit-learn"


@needs_two_cpus
def test_threads_option_overrides_the_cpu_count():
    report = _openmp_threads(cores=None, threads=1)
    assert report["during_fit"] == [[1]]
    # the limit is for the fit only: the caller's setting comes back afterwards
    assert report["after"] == [len(os.sched_getaffinity(0))]


def test_training_threads_defaults_to_affinity_and_refuses_nonsense(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert training_threads() == len(os.sched_getaffinity(0))
    assert training_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert training_threads() == 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError) as err:
            training_threads(bad)  # type: ignore[arg-type]
        assert err.value.field == "threads"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_rather_than_spin_unless_the_user_says_otherwise(given, expected):
    """Spinning OpenMP threads on a busy 2-core box made gbm training 5x slower (86.8 s vs 16.9 s);
    the policy must be set before scikit-learn loads the runtime, i.e. when tickbridge's CLI
    imports the models (app.cli itself loads no scikit-learn)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = ("import os, sys; import app.cli; loaded_early = 'sklearn' in sys.modules; "
            "import models.estimators; print(loaded_early, os.environ['OMP_WAIT_POLICY'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", expected]
