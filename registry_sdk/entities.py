"""Typed, frozen results: what the registry returns, never raw dicts.

Each type has one constructor from MLflow's REST JSON (``from_json``) and one from MLflow's
Python entities (``from_mlflow``); both ignore fields they do not know, so a newer server
never breaks an older client.
"""

from __future__ import annotations

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

__all__ = ["AliasEvent", "ModelVersion", "RegisteredModel"]

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
