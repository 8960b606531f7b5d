"""Typed, frozen results: what the registry returns, never raw dicts.

Each type has one constructor from MLflow's REST JSON (``from_json``) and one from MLflow's
Python entities (``from_mlflow``); both ignore fields they do not know, so a newer server
never breaks an older client.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import attrs

from registry_sdk import _tags
from registry_sdk.errors import InvalidResponseError
from registry_sdk.refs import ModelRef

__all__ = [
    "AliasEvent",
    "Environment",
    "Lineage",
    "ModelVersion",
    "RegisteredModel",
    "RunData",
    "VersionDiff",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _timestamp(value: object) -> datetime:
    """MLflow timestamps are epoch milliseconds (an int, or a string in REST JSON)."""
    if value is None or value == "":
        return _EPOCH
    try:
        ms = int(value)  # type: ignore[call-overload]
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        # OverflowError/OSError: infinity, or a date outside what datetime can hold.
        msg = f"expected a timestamp in epoch milliseconds, got {value!r}"
        raise InvalidResponseError(msg) from exc


def _epoch_ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool):
        value = None
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: JSON's Infinity
        msg = f"expected an integer {what}, got {value!r}"
        raise InvalidResponseError(msg) from exc


def _str(value: object, what: str, *, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        msg = f"expected a string {what}, got {value!r}"
        raise InvalidResponseError(msg)
    return value


def _opt_str(value: object) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _frozen_map(items: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(items))


def _json_tags(raw: object) -> Mapping[str, str]:
    """REST JSON tags: a list of ``{"key": ..., "value": ...}`` (absent when empty)."""
    if raw is None:
        return _frozen_map({})
    if not isinstance(raw, list):
        msg = f"expected a list of tags, got {type(raw).__name__}"
        raise InvalidResponseError(msg)
    out: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            msg = f"malformed tag {item!r}"
            raise InvalidResponseError(msg)
        value = item.get("value")
        out[item["key"]] = "" if value is None else str(value)
    return _frozen_map(out)


def _metrics_from_tags(tags: Mapping[str, str]) -> Mapping[str, float]:
    out: dict[str, float] = {}
    for key, value in tags.items():
        if key.startswith(_tags.METRICS_PREFIX):
            try:
                number = float(value)
            except ValueError:
                continue
            if not math.isnan(number):
                out[key[len(_tags.METRICS_PREFIX) :]] = number
    return _frozen_map(out)


def _mapping_field() -> Any:
    return attrs.field(factory=lambda: _frozen_map({}), converter=_frozen_map, eq=True)


def _tuple_field() -> Any:
    return attrs.field(factory=tuple, converter=tuple)


@attrs.frozen(kw_only=True)
class ModelVersion:
    """One version of a registered model, with its aliases filled in.

    ``metrics`` are read from the ``registry_sdk.metrics.*`` tags; ``ref`` is ``"name/version"``.
    """

    name: str
    version: int
    aliases: tuple[str, ...] = _tuple_field()
    tags: Mapping[str, str] = _mapping_field()
    run_id: str | None = None
    source: str = ""
    status: str = "READY"
    description: str | None = None
    created_at: datetime = _EPOCH
    updated_at: datetime = _EPOCH
    current_stage: str = "None"
    user_id: str | None = None
    run_link: str | None = None
    status_message: str | None = None
    model_id: str | None = None

    @property
    def ref(self) -> str:
        """The version's reference, ``name/version``."""
        return f"{self.name}/{self.version}"

    @property
    def model_ref(self) -> ModelRef:
        """The version's reference as a :class:`ModelRef`."""
        return ModelRef.of_version(self.name, self.version)

    @property
    def metrics(self) -> Mapping[str, float]:
        """Final metric values recorded as ``registry_sdk.metrics.<key>`` tags."""
        return _metrics_from_tags(self.tags)

    def to_json(self) -> dict[str, Any]:
        """MLflow's REST JSON for this version; :meth:`from_json` reads it back unchanged."""
        data: dict[str, Any] = {
            "name": self.name,
            "version": str(self.version),
            "aliases": list(self.aliases),
            "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
            "source": self.source,
            "status": self.status,
            "creation_timestamp": _epoch_ms(self.created_at),
            "last_updated_timestamp": _epoch_ms(self.updated_at),
            "current_stage": self.current_stage,
        }
        optional = {
            "run_id": self.run_id,
            "description": self.description,
            "user_id": self.user_id,
            "run_link": self.run_link,
            "status_message": self.status_message,
            "model_id": self.model_id,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with readable field names (times as ISO 8601)."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "metrics": dict(self.metrics),
            "run_id": self.run_id,
            "source": self.source,
            "status": self.status,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "current_stage": self.current_stage,
            "user_id": self.user_id,
            "model_id": self.model_id,
        }

    def __repr__(self) -> str:
        """Short: ``ModelVersion('churn', 7, aliases=('prod',), status='READY')``, no tags."""
        return (
            f"ModelVersion({self.name!r}, {self.version!r}, aliases={self.aliases!r}, "
            f"status={self.status!r})"
        )

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = [
            ("aliases", ", ".join(self.aliases) or "-"),
            ("status", self.status),
            ("created", self.created_at.isoformat(timespec="seconds")),
            ("run", self.run_id or "-"),
            ("source", self.source),
        ]
        rows += [(f"metric {k}", v) for k, v in sorted(self.metrics.items())]
        return _html_table(f"ModelVersion {self.ref}", rows)

    def with_aliases(self, aliases: Iterable[str]) -> ModelVersion:
        """A copy with ``aliases`` replaced (sorted, deduplicated)."""
        return attrs.evolve(self, aliases=tuple(sorted(set(aliases))))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersion:
        """Build from a ``model_version`` object of MLflow's REST API."""
        if not isinstance(data, Mapping):
            msg = f"expected a model version object, got {type(data).__name__}"
            raise InvalidResponseError(msg)
        aliases = data.get("aliases") or []
        if not isinstance(aliases, list):
            msg = f"expected a list of aliases, got {aliases!r}"
            raise InvalidResponseError(msg)
        return cls(
            name=_str(data.get("name"), "model name"),
            version=_int(data.get("version"), "version"),
            aliases=tuple(sorted(str(a) for a in aliases)),
            tags=_json_tags(data.get("tags")),
            run_id=_opt_str(data.get("run_id")),
            source=_str(data.get("source"), "source", default=""),
            status=_str(data.get("status"), "status", default="READY"),
            description=_opt_str(data.get("description")),
            created_at=_timestamp(data.get("creation_timestamp")),
            updated_at=_timestamp(data.get("last_updated_timestamp")),
            current_stage=_str(data.get("current_stage"), "stage", default="None"),
            user_id=_opt_str(data.get("user_id")),
            run_link=_opt_str(data.get("run_link")),
            status_message=_opt_str(data.get("status_message")),
            model_id=_opt_str(data.get("model_id")),
        )

    @classmethod
    def from_mlflow(cls, mv: Any) -> ModelVersion:
        """Build from an ``mlflow.entities.model_registry.ModelVersion``."""
        return cls(
            name=mv.name,
            version=int(mv.version),
            aliases=tuple(sorted(getattr(mv, "aliases", None) or ())),
            tags=dict(getattr(mv, "tags", None) or {}),
            run_id=_opt_str(mv.run_id),
            source=mv.source or "",
            status=str(mv.status or "READY"),
            description=_opt_str(mv.description),
            created_at=_timestamp(mv.creation_timestamp),
            updated_at=_timestamp(mv.last_updated_timestamp),
            current_stage=str(mv.current_stage or "None"),
            user_id=_opt_str(getattr(mv, "user_id", None)),
            run_link=_opt_str(getattr(mv, "run_link", None)),
            status_message=_opt_str(getattr(mv, "status_message", None)),
            model_id=_opt_str(getattr(mv, "model_id", None)),
        )


@attrs.frozen(kw_only=True)
class RegisteredModel:
    """A registered model: its description, tags, and where each alias points."""

    name: str
    description: str | None = None
    tags: Mapping[str, str] = _mapping_field()
    aliases: Mapping[str, int] = _mapping_field()
    latest_version: int | None = None
    created_at: datetime = _EPOCH
    updated_at: datetime = _EPOCH

    def __repr__(self) -> str:
        """Short: ``RegisteredModel('churn', latest_version=7, aliases={'prod': 7})``."""
        aliases = dict(sorted(self.aliases.items()))
        return (
            f"RegisteredModel({self.name!r}, latest_version={self.latest_version!r}, "
            f"aliases={aliases!r})"
        )

    def aliases_of(self, version: int) -> tuple[str, ...]:
        """The aliases that point at ``version``, sorted."""
        return tuple(sorted(a for a, v in self.aliases.items() if v == version))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegisteredModel:
        """Build from a ``registered_model`` object of MLflow's REST API."""
        if not isinstance(data, Mapping):
            msg = f"expected a registered model object, got {type(data).__name__}"
            raise InvalidResponseError(msg)
        raw_aliases = data.get("aliases") or []
        latest = data.get("latest_versions") or []
        if not isinstance(raw_aliases, list) or not isinstance(latest, list):
            msg = "malformed aliases or latest_versions in registered model"
            raise InvalidResponseError(msg)
        aliases: dict[str, int] = {}
        for item in raw_aliases:
            if not isinstance(item, Mapping) or not isinstance(item.get("alias"), str):
                msg = f"malformed alias {item!r}"
                raise InvalidResponseError(msg)
            aliases[item["alias"]] = _int(item.get("version"), "alias version")
        versions = [
            _int(v.get("version") if isinstance(v, Mapping) else None, "version") for v in latest
        ]
        return cls(
            name=_str(data.get("name"), "model name"),
            description=_opt_str(data.get("description")),
            tags=_json_tags(data.get("tags")),
            aliases=aliases,
            latest_version=max(versions, default=None),
            created_at=_timestamp(data.get("creation_timestamp")),
            updated_at=_timestamp(data.get("last_updated_timestamp")),
        )

    @classmethod
    def from_mlflow(cls, rm: Any) -> RegisteredModel:
        """Build from an ``mlflow.entities.model_registry.RegisteredModel``."""
        latest = [int(v.version) for v in (getattr(rm, "latest_versions", None) or ())]
        return cls(
            name=rm.name,
            description=_opt_str(rm.description),
            tags=dict(getattr(rm, "tags", None) or {}),
            aliases={a: int(v) for a, v in (getattr(rm, "aliases", None) or {}).items()},
            latest_version=max(latest, default=None),
            created_at=_timestamp(rm.creation_timestamp),
            updated_at=_timestamp(rm.last_updated_timestamp),
        )


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None else _int(value, what)


@attrs.frozen(kw_only=True)
class AliasEvent:
    """One move of an alias: from which version to which (``None`` = unset), by whom, when, why.

    ``external`` marks a move made outside registry_sdk, inferred from the alias state.
    """

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    by: str
    at: datetime
    reason: str | None = None
    forced: bool = False
    external: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``at`` as ISO 8601)."""
        return {
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "by": self.by,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "forced": self.forced,
            "external": self.external,
        }

    def to_tag_value(self) -> str:
        """The compact JSON stored in a ``registry_sdk.alias_log.*`` tag."""
        payload = {
            "alias": self.alias,
            "from": self.from_version,
            "to": self.to_version,
            "by": self.by,
            "at": int(self.at.timestamp() * 1000),
            "reason": self.reason,
            "forced": self.forced,
        }
        return json.dumps(payload, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_tag_value(cls, name: str, value: str) -> AliasEvent:
        """Parse a ``registry_sdk.alias_log.*`` tag value written by :meth:`to_tag_value`."""
        try:
            data = json.loads(value)
        except ValueError as exc:
            msg = f"alias log entry of {name!r} is not JSON: {value[:80]!r}"
            raise InvalidResponseError(msg) from exc
        if not isinstance(data, Mapping) or not isinstance(data.get("alias"), str):
            msg = f"alias log entry of {name!r} is malformed: {value[:80]!r}"
            raise InvalidResponseError(msg)
        return cls(
            name=name,
            alias=data["alias"],
            from_version=_opt_int(data.get("from"), "from version"),
            to_version=_opt_int(data.get("to"), "to version"),
            by=str(data.get("by") or "unknown"),
            at=_timestamp(data.get("at")),
            reason=_opt_str(data.get("reason")),
            forced=bool(data.get("forced", False)),
        )


# ================================================================================ notebook display


def _html_table(title: str, rows: Iterable[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    return f"<div><strong>{html.escape(title)}</strong><table>{cells}</table></div>"


# ================================================================================ lineage types


@attrs.frozen
class Environment:
    """The Python, platform and distributions a model needs (distribution name -> version)."""

    python: str
    platform: str
    packages: Mapping[str, str]

    def requirements(self) -> list[str]:
        """Pinned pip requirements, sorted: ``["numpy==2.1.0", "scikit-learn==1.5.2"]``.

        A local version label is left out (``torch==2.4.0``, not ``torch==2.4.0+cpu``): no
        package index but the build's own has such versions, as MLflow pins them too.
        """
        return [
            f"{name}=={version.split('+', 1)[0]}" for name, version in sorted(self.packages.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"python": self.python, "platform": self.platform, "packages": dict(self.packages)}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Environment | None:
        """Read the ``registry_sdk.env.*`` version tags; None when they are absent."""
        if _tags.ENV_PYTHON not in tags and _tags.ENV_PACKAGES not in tags:
            return None
        try:
            packages = json.loads(tags.get(_tags.ENV_PACKAGES, "{}"))
        except ValueError:
            packages = {}
        if not isinstance(packages, dict):
            packages = {}
        return cls(
            python=tags.get(_tags.ENV_PYTHON, ""),
            platform=tags.get(_tags.ENV_PLATFORM, ""),
            packages={str(k): str(v) for k, v in packages.items()},
        )


@attrs.frozen(kw_only=True)
class RunData:
    """The MLflow run that produced a version: where, when, with which params and metrics."""

    run_id: str
    experiment_id: str
    experiment_name: str | None = None
    status: str | None = None
    user: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    params: Mapping[str, str] = _mapping_field()
    metrics: Mapping[str, float] = _mapping_field()
    tags: Mapping[str, str] = _mapping_field()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "experiment_name": self.experiment_name,
            "status": self.status,
            "user": self.user,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], experiment_name: str | None = None) -> RunData:
        """Build from the ``run`` object of MLflow's REST API."""
        if not isinstance(data, Mapping):
            msg = f"expected a run object, got {type(data).__name__}"
            raise InvalidResponseError(msg)
        info = data.get("info") or {}
        body = data.get("data") or {}
        if not isinstance(info, Mapping) or not isinstance(body, Mapping):
            msg = "malformed run object"
            raise InvalidResponseError(msg)
        metrics: dict[str, float] = {}
        for item in body.get("metrics") or []:
            if isinstance(item, Mapping) and isinstance(item.get("key"), str):
                try:
                    metrics[item["key"]] = float(item.get("value"))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
        return cls(
            run_id=_str(info.get("run_id"), "run id"),
            experiment_id=str(info.get("experiment_id", "")),
            experiment_name=experiment_name,
            status=_opt_str(info.get("status")),
            user=_opt_str(info.get("user_id")),
            start_time=_timestamp(info["start_time"]) if info.get("start_time") else None,
            end_time=_timestamp(info["end_time"]) if info.get("end_time") else None,
            params=_json_tags(body.get("params")),
            metrics=metrics,
            tags=_json_tags(body.get("tags")),
        )

    @classmethod
    def from_mlflow(cls, run: Any, experiment_name: str | None = None) -> RunData:
        """Build from an ``mlflow.entities.Run``."""
        info = run.info
        return cls(
            run_id=info.run_id,
            experiment_id=str(info.experiment_id),
            experiment_name=experiment_name,
            status=_opt_str(info.status),
            user=_opt_str(getattr(info, "user_id", None)),
            start_time=_timestamp(info.start_time) if info.start_time else None,
            end_time=_timestamp(info.end_time) if info.end_time else None,
            params=dict(run.data.params),
            metrics={k: float(v) for k, v in run.data.metrics.items()},
            tags=dict(run.data.tags),
        )


def _data_fingerprints(tags: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tags.items():
        if key.startswith(_tags.DATA_PREFIX):
            try:
                out[key[len(_tags.DATA_PREFIX) :]] = json.loads(value)
            except ValueError:
                out[key[len(_tags.DATA_PREFIX) :]] = value
    return out


@attrs.frozen(kw_only=True)
class Lineage:
    """Where a version came from: who, when, which run, code, data and base versions."""

    version: ModelVersion
    created_by: str | None
    run: RunData | None
    git: Mapping[str, str] = _mapping_field()
    code: Mapping[str, str] = _mapping_field()
    environment: Environment | None = None
    data: Mapping[str, Any] = _mapping_field()
    derived_from: tuple[str, ...] = _tuple_field()
    alias_events: tuple[AliasEvent, ...] = _tuple_field()

    @property
    def params(self) -> Mapping[str, str]:
        """The run's params (empty without a run)."""
        return self.run.params if self.run else _frozen_map({})

    @property
    def metrics(self) -> Mapping[str, float]:
        """Metrics recorded on the version, completed by the run's."""
        merged = dict(self.run.metrics) if self.run else {}
        merged.update(self.version.metrics)
        return _frozen_map(merged)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ref": self.version.ref,
            "version": self.version.to_dict(),
            "created_by": self.created_by,
            "created_at": self.version.created_at.isoformat(),
            "updated_at": self.version.updated_at.isoformat(),
            "run": self.run.to_dict() if self.run else None,
            "git": dict(self.git),
            "code": dict(self.code),
            "environment": self.environment.to_dict() if self.environment else None,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "data": dict(self.data),
            "derived_from": list(self.derived_from),
            "alias_events": [e.to_dict() for e in self.alias_events],
        }

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = [
            ("created by", self.created_by or "-"),
            ("created at", self.version.created_at.isoformat(timespec="seconds")),
            (
                "run",
                f"{self.run.run_id} ({self.run.experiment_name or self.run.experiment_id})"
                if self.run
                else "-",
            ),
            ("git", " ".join(f"{k}={v}" for k, v in self.git.items()) or "-"),
            ("code", self.code.get("function", "-")),
            ("derived from", ", ".join(self.derived_from) or "-"),
        ]
        rows += [(f"param {k}", v) for k, v in sorted(self.params.items())]
        rows += [(f"metric {k}", v) for k, v in sorted(self.metrics.items())]
        if self.environment:
            rows += [(f"package {k}", v) for k, v in sorted(self.environment.packages.items())]
        rows += [(f"data {k}", json.dumps(v)) for k, v in sorted(self.data.items())]
        rows += [
            (
                f"alias {e.alias}",
                f"{e.from_version} -> {e.to_version} by {e.by} at {e.at:%Y-%m-%d %H:%M}",
            )
            for e in self.alias_events
        ]
        return _html_table(f"Lineage of {self.version.ref}", rows)


@attrs.frozen(kw_only=True)
class VersionDiff:
    """What changed from version ``a`` to version ``b``."""

    a: ModelVersion
    b: ModelVersion
    params: Mapping[str, tuple[str | None, str | None]] = _mapping_field()
    metrics: Mapping[str, tuple[float | None, float | None, float | None]] = _mapping_field()
    packages: Mapping[str, tuple[str | None, str | None]] = _mapping_field()
    git: Mapping[str, tuple[str | None, str | None]] = _mapping_field()
    data: Mapping[str, tuple[Any, Any]] = _mapping_field()

    @property
    def packages_added(self) -> dict[str, str]:
        """Distributions only ``b`` needs."""
        return {k: v[1] for k, v in self.packages.items() if v[0] is None and v[1] is not None}

    @property
    def packages_removed(self) -> dict[str, str]:
        """Distributions only ``a`` needed."""
        return {k: v[0] for k, v in self.packages.items() if v[1] is None and v[0] is not None}

    @property
    def packages_changed(self) -> dict[str, tuple[str, str]]:
        """Distributions both need, at different versions: (a's, b's)."""
        return {
            k: (v[0], v[1])
            for k, v in self.packages.items()
            if v[0] is not None and v[1] is not None
        }

    @property
    def is_empty(self) -> bool:
        """True when nothing differs."""
        return not (self.params or self.metrics or self.packages or self.git or self.data)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "a": self.a.ref,
            "b": self.b.ref,
            "params": {k: {"a": v[0], "b": v[1]} for k, v in self.params.items()},
            "metrics": {k: {"a": v[0], "b": v[1], "delta": v[2]} for k, v in self.metrics.items()},
            "packages": {
                "added": self.packages_added,
                "removed": self.packages_removed,
                "changed": {k: {"a": v[0], "b": v[1]} for k, v in self.packages_changed.items()},
            },
            "git": {k: {"a": v[0], "b": v[1]} for k, v in self.git.items()},
            "data": {k: {"a": v[0], "b": v[1]} for k, v in self.data.items()},
        }

    def _repr_html_(self) -> str:
        rows: list[tuple[str, object]] = []
        rows += [(f"param {k}", f"{v[0]} -> {v[1]}") for k, v in sorted(self.params.items())]
        rows += [
            (f"metric {k}", f"{v[0]} -> {v[1]}" + (f" ({v[2]:+.4g})" if v[2] is not None else ""))
            for k, v in sorted(self.metrics.items())
        ]
        rows += [(f"package {k}", f"{v[0]} -> {v[1]}") for k, v in sorted(self.packages.items())]
        rows += [(f"git {k}", f"{v[0]} -> {v[1]}") for k, v in sorted(self.git.items())]
        rows += [(f"data {k}", "changed") for k in sorted(self.data)]
        return _html_table(f"Diff {self.a.ref} -> {self.b.ref}", rows or [("", "no differences")])
