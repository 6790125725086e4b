"""The model registry: an artifact on disk plus a row in the store, checked on every load.

A model version is saved under `root/<name>/v<version>.joblib` (`.pt` for torch models); its row records the kind,
feature spec, parameters, training window, metrics and a sha256 seal. The seal covers the artifact *and*
what decides how it trades: the kind, the feature spec, the parameters and the training window
(`record_digest`). A hash of the artifact alone let a feature spec edited in the row (same number
of features, other indicators) trade silently. Loading recomputes the seal and refuses anything
that does not match (ModelIntegrityError, naming the model): nothing trades on a model that is not
the one that was evaluated. Rows sealed by an older version over the artifact only are refused
too, with the way out (`reseal`, audited, after checking the artifact still matches).
"""

from __future__ import annotations

import hashlib
import json
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


def record_digest(artifact_sha256: str, kind: str, feature_spec: dict[str, Any], params: dict[str, Any],
                  train_start: int, train_end: int) -> str:
    """The seal of a registered model: sha256 over the artifact's sha256 and a canonical JSON of
    the row fields that decide its trading (sorted keys, so a store that reorders JSON keys, as
    PostgreSQL's JSONB does, gives the same seal)."""
    payload = json.dumps({"artifact_sha256": artifact_sha256, "kind": kind, "feature_spec": feature_spec,
                          "params": params, "train_window": [int(train_start), int(train_end)]},
                         sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(payload.encode()).hexdigest()


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
            # the row's JSON as the store will give it back, so the seal is computed on what is read
            feature_spec = json.loads(json.dumps(spec.model_dump(mode="json")))
            params = json.loads(json.dumps({"seed": model.seed, **model.params}))
            seal = record_digest(sha256_of(path), model.kind, feature_spec, params, train_window[0], train_window[1])
            row = {"name": name, "version": version, "kind": model.kind,
                   "feature_spec": feature_spec, "params": params,
                   "train_start": train_window[0], "train_end": train_window[1], "metrics": metrics,
                   "sha256": seal, "artifact": str(path), "status": "candidate"}
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
        artifact_sha = sha256_of(path)
        if artifact_sha == record.sha256:
            raise ModelIntegrityError(f"model {record.name} v{record.version} was sealed over its artifact only (an "
                                      "older registry): its feature spec and parameters are unchecked; refusing to "
                                      "load it until it is resealed (ModelRegistry.reseal) or registered again")
        if _seal(record, artifact_sha) != record.sha256:
            raise ModelIntegrityError(f"model {record.name} v{record.version}: its artifact, kind, feature spec, "
                                      "parameters or training window changed since it was registered (sha256 seal "
                                      f"{record.sha256[:12]}); refusing to load it")
        return load_model(record.kind, path), record

    def reseal(self, model_id: int, actor: str, reason: str) -> ModelRecord:
        """Seal a row registered with an artifact-only hash over its artifact, spec and parameters as
        they are now (audited): for a person who has checked the row, once, after upgrading."""
        record = self.get(model_id)
        path = Path(record.artifact)
        if not path.is_file() or sha256_of(path) != record.sha256:
            raise ModelIntegrityError(f"model {record.name} v{record.version}: only a row whose artifact matches its "
                                      "artifact-only hash can be resealed")
        seal = _seal(record, record.sha256)
        with self.engine.begin() as connection:
            connection.execute(update(MODELS).where(MODELS.c.id == model_id).values(sha256=seal))
            audit(connection, actor, "model.reseal", f"model:{record.name}",
                  {"model_id": model_id, "version": record.version, "reason": reason})
        return self.get(model_id)


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


def _seal(record: ModelRecord, artifact_sha256: str) -> str:
    return record_digest(artifact_sha256, record.kind, record.feature_spec, record.params, record.train_start,
                         record.train_end)


def _record(row: Any) -> ModelRecord:
    return ModelRecord(row.id, row.name, row.version, row.kind, row.feature_spec, row.params, row.train_start,
                       row.train_end, row.metrics, row.sha256, row.artifact, row.status)
