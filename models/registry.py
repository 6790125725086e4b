"""The model registry: an artifact on disk plus a row in the store, checked on every load.

A model version is saved under `root/<name>/v<version>.joblib` (`.pt` for torch models); its row records the kind, feature
spec, parameters, training window, metrics and the artifact's sha256. Loading recomputes the hash
and refuses a file that does not match (ModelIntegrityError, naming the model and both hashes):
nothing trades on a model that is not the one that was evaluated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from engine.errors import TickbridgeError
from engine.store.models import AuditRow, ModelRow
from models.estimators import SignalModel, artifact_suffix, load_model
from models.features import FeatureSpec

MODELS = ModelRow.__table__
AUDIT = AuditRow.__table__
ACTIVE, CANDIDATE, RETIRED, REJECTED = "active", "candidate", "retired", "rejected"


class ModelIntegrityError(TickbridgeError):
    """A model artifact is missing or is not the file that was registered."""


class UnknownModel(TickbridgeError):
    """No registered model has that id."""


@dataclass(frozen=True, slots=True)
class ModelRecord:
    id: int
    name: str
    version: int
    kind: str
    feature_spec: dict[str, Any]
    params: dict[str, Any]
    train_start: int
    train_end: int
    metrics: dict[str, Any]
    sha256: str
    artifact: str
    status: str

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.model_validate(self.feature_spec)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    def __init__(self, engine: Engine, root: str | Path = "var/models") -> None:
        self.engine = engine
        self.root = Path(root)

    def register(self, name: str, model: SignalModel, spec: FeatureSpec, train_window: tuple[int, int],
                 metrics: dict[str, Any]) -> ModelRecord:
        """Save the artifact as the next version of `name` and record it (status: candidate)."""
        with self.engine.begin() as connection:
            latest = connection.execute(select(func.max(MODELS.c.version)).where(MODELS.c.name == name)).scalar()
            version = (latest or 0) + 1
            path = self.root / name / f"v{version}{artifact_suffix(model.kind)}"
            path.parent.mkdir(parents=True, exist_ok=True)
            model.save(path)
            row = {"name": name, "version": version, "kind": model.kind,
                   "feature_spec": spec.model_dump(mode="json"), "params": {"seed": model.seed, **model.params},
                   "train_start": train_window[0], "train_end": train_window[1], "metrics": metrics,
                   "sha256": sha256_of(path), "artifact": str(path), "status": "candidate"}
            new_id = connection.execute(insert(MODELS).values(**row)).inserted_primary_key[0]
        return ModelRecord(id=new_id, **row)

    def list(self) -> list[ModelRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(MODELS).order_by(MODELS.c.name, MODELS.c.version)).all()
        return [_record(r) for r in rows]

    def get(self, model_id: int) -> ModelRecord:
        with self.engine.connect() as connection:
            row = connection.execute(select(MODELS).where(MODELS.c.id == model_id)).first()
        if row is None:
            raise UnknownModel(f"no model with id {model_id}")
        return _record(row)

    def load(self, model_id: int) -> tuple[SignalModel, ModelRecord]:
        """The model and its record, after checking the artifact is the one registered."""
        record = self.get(model_id)
        path = Path(record.artifact)
        if not path.is_file():
            raise ModelIntegrityError(f"model {record.name} v{record.version}: artifact {path} is missing")
        actual = sha256_of(path)
        if actual != record.sha256:
            raise ModelIntegrityError(f"model {record.name} v{record.version}: artifact {path} has sha256 "
                                      f"{actual}, registered {record.sha256}; refusing to load it")
        return load_model(record.kind, path), record


    # -- deployment: which version of a name trades -------------------------------------------------
    def active(self, name: str) -> ModelRecord | None:
        """The version of `name` that trades now (at most one is active)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(MODELS).where(MODELS.c.name == name, MODELS.c.status == ACTIVE)).first()
        return None if row is None else _record(row)

    def promote(self, model_id: int, actor: str, reason: str) -> ModelRecord:
        """Make `model_id` the active version of its name, retiring the one before, and write
        both to the audit log, in one transaction: a crash leaves the old or the new, never none."""
        record = self.get(model_id)
        with self.engine.begin() as connection:
            previous = connection.execute(select(MODELS.c.id, MODELS.c.version).where(
                MODELS.c.name == record.name, MODELS.c.status == ACTIVE)).first()
            connection.execute(update(MODELS).where(MODELS.c.name == record.name, MODELS.c.status == ACTIVE)
                               .values(status=RETIRED))
            connection.execute(update(MODELS).where(MODELS.c.id == model_id).values(status=ACTIVE))
            audit(connection, actor, "model.promote", f"model:{record.name}",
                  {"model_id": model_id, "version": record.version, "reason": reason,
                   "replaced_model_id": previous.id if previous else None,
                   "replaced_version": previous.version if previous else None})
        return self.get(model_id)

    def reject(self, model_id: int, actor: str, reason: str) -> ModelRecord:
        """Record that a candidate was evaluated and not deployed."""
        record = self.get(model_id)
        with self.engine.begin() as connection:
            connection.execute(update(MODELS).where(MODELS.c.id == model_id).values(status=REJECTED))
            audit(connection, actor, "model.reject", f"model:{record.name}",
                  {"model_id": model_id, "version": record.version, "reason": reason})
        return self.get(model_id)


def audit(connection: Connection, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
    """One row in the audit log, inside the caller's transaction."""
    connection.execute(insert(AUDIT).values(actor=actor, action=action, subject=subject, detail=detail))


def _record(row: Any) -> ModelRecord:
    return ModelRecord(row.id, row.name, row.version, row.kind, row.feature_spec, row.params, row.train_start,
                       row.train_end, row.metrics, row.sha256, row.artifact, row.status)
