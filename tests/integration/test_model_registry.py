"""The model registry on SQLite and PostgreSQL: versions, hashes checked on load, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.store.db import make_engine, upgrade
from models.estimators import SklearnModel
from models.features import FeatureSpec
from models.registry import ModelIntegrityError, ModelRegistry, UnknownModel

rng = np.random.default_rng(3)
X = rng.normal(size=(300, 4))
Y = np.where(X[:, 0] + 0.3 * rng.normal(size=300) > 0, 1.0, -1.0)


def registry(database_url, tmp_path) -> ModelRegistry:
    upgrade(database_url)
    return ModelRegistry(make_engine(database_url), tmp_path / "models")


def test_register_versions_and_load_back_the_same_model(database_url, tmp_path):
    reg = registry(database_url, tmp_path)
    first = reg.register("eurusd", SklearnModel("logreg", seed=1).fit(X, Y), FeatureSpec(), (1, 2), {"auc": 0.61})
    second = reg.register("eurusd", SklearnModel("gbm", seed=1).fit(X, Y), FeatureSpec(rsi=[7]), (3, 4), {"auc": 0.63})
    assert (first.version, second.version) == (1, 2)
    model, record = reg.load(second.id)
    assert record.kind == "gbm" and record.spec.rsi == [7] and record.metrics == {"auc": 0.63}
    np.testing.assert_array_equal(model.predict_proba(X[:5]),
                                  SklearnModel("gbm", seed=1).fit(X, Y).predict_proba(X[:5]))
    assert [r.version for r in reg.list()] == [1, 2]


def test_an_artifact_that_changed_after_registration_is_refused(database_url, tmp_path):
    reg = registry(database_url, tmp_path)
    record = reg.register("eurusd", SklearnModel("logreg").fit(X, Y), FeatureSpec(), (1, 2), {})
    with open(record.artifact, "ab") as artifact:
        artifact.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        reg.load(record.id)


def test_a_missing_artifact_and_an_unknown_id_are_clear_errors(database_url, tmp_path):
    reg = registry(database_url, tmp_path)
    record = reg.register("eurusd", SklearnModel("logreg").fit(X, Y), FeatureSpec(), (1, 2), {})
    (tmp_path / "models" / "eurusd" / "v1.joblib").unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        reg.load(record.id)
    with pytest.raises(UnknownModel, match="no model with id 999"):
        reg.get(999)


def test_cli_lists_and_shows_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    reg = registry(url, tmp_path)
    record = reg.register("spy_gbm", SklearnModel("gbm").fit(X, Y), FeatureSpec(), (0, 86_400 * 10**9), {"auc": 0.6})
    listed = subprocess.run([sys.executable, "-m", "app.cli", "models", "list", "--url", url],
                            capture_output=True, text=True)
    assert listed.returncode == 0 and "spy_gbm" in listed.stdout and record.sha256[:12] in listed.stdout
    shown = subprocess.run([sys.executable, "-m", "app.cli", "models", "show", str(record.id), "--url", url],
                           capture_output=True, text=True)
    assert shown.returncode == 0 and record.sha256 in shown.stdout and '"auc": 0.6' in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "app.cli", "models", "show", "42", "--url", url],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no model with id 42" in missing.stderr and "Traceback" not in missing.stderr
