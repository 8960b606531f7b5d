"""Lifecycle and lineage: promotion with gates, alias history, rollback, lineage, diffs, stages.

Every alias move made through registry_sdk is one registered-model tag
``registry_sdk.alias_log.<epoch_ms>.<random>`` holding the event as JSON, written while the
mover holds a short per-alias lock, so the log's order is the order of the moves and no two
movers overwrite each other. Moves made by other tools are inferred when the alias state
differs from the last recorded event.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import operator
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk import _tags
from registry_sdk.entities import (
    AliasEvent,
    Environment,
    Lineage,
    ModelVersion,
    RegisteredModel,
    VersionDiff,
    _data_fingerprints,
)
from registry_sdk.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    NotFoundError,
    PromotionRejectedError,
    RegistryError,
    SignatureError,
)
from registry_sdk.refs import MAX_NAME_LENGTH, ModelRef, validate_alias

if TYPE_CHECKING:
    from registry_sdk.client import RegistryClient

__all__ = ["AliasHistory", "Gate", "MigrationStep", "parse_gate"]

logger = logging.getLogger("registry_sdk.lifecycle")

#: Registered models named like this are short-lived move locks, hidden from searches.
LOCK_PREFIX = "__registry_sdk_lock__."
LOCK_TTL_S = 30.0
LOCK_WAIT_S = 120.0

# ================================================================================ the move lock


def _lock_name(name: str, alias: str) -> str:
    readable = f"{LOCK_PREFIX}{name}.{alias}"
    if len(readable) <= MAX_NAME_LENGTH:
        return readable
    # A long model name: the lock must still be a valid name (MLflow stores 256 characters).
    # No "." after the prefix, so it never equals a readable lock ("<name>.<alias>").
    digest = hashlib.sha256(f"{name}\x00{alias}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{LOCK_PREFIX}{digest}"


@contextmanager
def alias_lock(client: RegistryClient, name: str, alias: str) -> Iterator[None]:
    """Hold the move lock of ``name@alias``: a registered model only one mover can create.

    MLflow has no compare-and-set; creating a registered model is atomic, so it serves as a
    mutex. A lock older than ``LOCK_TTL_S`` (its holder died) is broken.
    """
    backend = client.backend
    lock = _lock_name(name, alias)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + LOCK_WAIT_S
    attempt = 0
    while True:
        attempt += 1
        try:
            backend.create_model(
                lock,
                description="registry_sdk alias move lock; safe to delete if stale",
                tags={"registry_sdk.lock.owner": owner, "registry_sdk.lock.at": str(time.time())},
            )
            break
        except (AlreadyExistsError, NotFoundError):
            # NotFoundError: MLflow's store answers a create that collided with a lock being
            # deleted at that moment by looking the winner up, finds nothing, says "not found".
            _break_if_stale(client, lock)
            if time.monotonic() > deadline:
                msg = f"could not get the move lock of {name}@{alias} within {LOCK_WAIT_S:.0f} s"
                raise RegistryError(msg) from None
            client._sleep(min(0.05 * attempt, 0.5))  # noqa: SLF001 - the client's injectable sleep
    try:
        yield
    finally:
        _release(client, lock, f"{name}@{alias}")


#: Tries to delete a held lock: a store may refuse one delete that races another mover's create.
_RELEASE_TRIES = 3


def _release(client: RegistryClient, lock: str, label: str) -> None:
    """Delete the lock. The move is done either way: a lock left behind is only logged.

    PostgreSQL can refuse the delete (a foreign-key violation) while another mover's create of
    the same lock is under way; the delete is tried again. A lock that still stays is broken
    as stale by the next mover after ``LOCK_TTL_S``.
    """
    for attempt in range(1, _RELEASE_TRIES + 1):
        try:
            client.backend.delete_model(lock)
        except NotFoundError:
            logger.warning("the move lock of %s was broken while held", label)
            return
        except RegistryError as exc:
            if attempt == _RELEASE_TRIES:
                logger.warning(
                    "could not release the move lock of %s (%s); the next move breaks it "
                    "after %.0f s",
                    label,
                    exc,
                    LOCK_TTL_S,
                )
                return
            client._sleep(0.1 * attempt)  # noqa: SLF001 - the client's injectable sleep
        else:
            return


def _break_if_stale(client: RegistryClient, lock: str) -> None:
    try:
        model = client.backend.get_model(lock)
    except NotFoundError:
        return
    try:
        taken = float(model.tags.get("registry_sdk.lock.at", "0"))
    except ValueError:
        taken = 0.0
    if time.time() - taken > LOCK_TTL_S:
        logger.warning("breaking the stale move lock %s", lock)
        with suppress(NotFoundError):
            client.backend.delete_model(lock)


def move_alias(
    client: RegistryClient,
    name: str,
    alias: str,
    version: int | Callable[[RegisteredModel], int | None] | None,
    *,
    reason: str | None,
    forced: bool = False,
) -> AliasEvent:
    """Point ``name@alias`` at ``version`` (None deletes it) and log the move, under the lock.

    ``version`` may be a function of the registered model as read under the lock (a rollback
    picks its target that way, so no concurrent move can make the choice stale).
    """
    validate_alias(alias)
    backend = client.backend
    with alias_lock(client, name, alias):
        model = backend.get_model(name)
        before = model.aliases.get(alias)
        if callable(version):
            version = version(model)
        if version is None:
            if before is None:
                msg = f"model {name!r} has no alias {alias!r}"
                raise AliasNotFoundError(msg)
            backend.delete_alias(name, alias)
        else:
            backend.set_alias(name, alias, int(version))
        event = AliasEvent(
            name=name,
            alias=alias,
            from_version=before,
            to_version=version,
            by=_current_user(),
            at=_event_time(model),
            reason=reason,
            forced=forced,
        )
        stamp = int(event.at.timestamp() * 1000)
        key = f"{_tags.ALIAS_LOG_PREFIX}{stamp:013d}.{uuid.uuid4().hex[:8]}"
        backend.set_model_tag(name, key, event.to_tag_value())
    return event


def _event_time(model: RegisteredModel) -> datetime:
    """Now, but never before the last logged event: clocks of different movers may differ."""
    now = datetime.now(timezone.utc)
    # Events are stored to the millisecond: compare at that precision, or a move within the
    # same millisecond as the last one would share its stamp and sort before it by chance.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    logged = _logged_events(model)
    if logged and logged[-1][1].at >= now:
        return logged[-1][1].at + timedelta(milliseconds=1)
    return now


def _current_user() -> str:
    from registry_sdk.client import _current_user as user

    return user()


# ================================================================================ history


class AliasHistory(list[AliasEvent]):
    """A list of :class:`~registry_sdk.AliasEvent`, oldest first, that renders as a table."""

    def to_dict(self) -> list[dict[str, Any]]:
        """JSON-ready events."""
        return [event.to_dict() for event in self]

    def _repr_html_(self) -> str:
        from registry_sdk.entities import _html_table

        rows = [
            (
                f"{e.at:%Y-%m-%d %H:%M:%S} {e.alias}",
                f"{_version_or_dash(e.from_version)} -> {_version_or_dash(e.to_version)} by {e.by}"
                + (f" ({e.reason})" if e.reason else "")
                + (" [forced]" if e.forced else "")
                + (" [outside registry_sdk]" if e.external else ""),
            )
            for e in self
        ]
        return _html_table("Alias history", rows or [("", "no events")])


def _version_or_dash(version: int | None) -> str:
    """A version number, or ``-`` for none (an alias set for the first time, or deleted)."""
    return "-" if version is None else str(version)


def _logged_events(model: RegisteredModel) -> list[tuple[str, AliasEvent]]:
    events = []
    for key, value in model.tags.items():
        if key.startswith(_tags.ALIAS_LOG_PREFIX):
            try:
                events.append((key, AliasEvent.from_tag_value(model.name, value)))
            except RegistryError:
                logger.warning("skipping a malformed alias log entry %s of %s", key, model.name)
    # Keys start with a zero-padded epoch in ms: sorting keys sorts by time, ties by random.
    events.sort(key=lambda item: (item[1].at, item[0]))
    return events


def history(model: RegisteredModel, alias: str | None = None) -> AliasHistory:
    """The alias events of ``model`` (one alias or all), plus inferred outside moves.

    A move made by another tool shows either as a gap in the chain (an event whose
    ``from_version`` is not where the previous event left the alias) or as a difference
    between the last event and the alias as it is now; each becomes an ``external`` event.
    """
    merged: list[AliasEvent] = []
    last: dict[str, AliasEvent] = {}
    for _, event in _logged_events(model):
        previous = last.get(event.alias)
        recorded = previous.to_version if previous else None
        if previous is not None and event.from_version != recorded:
            merged.append(
                _outside_move(model.name, event.alias, recorded, event.from_version, event.at)
            )
        merged.append(event)
        last[event.alias] = event
    for name in sorted(set(model.aliases) | set(last)):
        current = model.aliases.get(name)
        previous = last.get(name)
        recorded = previous.to_version if previous else None
        if current != recorded:
            when = max(model.updated_at, previous.at) if previous else model.updated_at
            merged.append(_outside_move(model.name, name, recorded, current, when))
    merged.sort(key=lambda e: e.at)  # stable: logged order kept for equal times
    return AliasHistory(e for e in merged if alias is None or e.alias == alias)


def _outside_move(
    name: str, alias: str, before: int | None, after: int | None, at: datetime
) -> AliasEvent:
    return AliasEvent(
        name=name,
        alias=alias,
        from_version=before,
        to_version=after,
        by="unknown",
        at=at,
        reason="moved outside registry_sdk",
        external=True,
    )


def previous_holder(model: RegisteredModel, alias: str) -> int:
    """The version ``alias`` held before its current one: where a rollback takes it.

    The alias's history is replayed as an undo stack: a move back to the version on top of the
    stack steps back (pops it), any other move remembers the version it left. After moves
    1 -> 2 -> 3, rollbacks go to 2, then to 1; never back to a version just rolled back from.
    """
    current = model.aliases.get(alias)
    if current is None:
        msg = f"model {model.name!r} has no alias {alias!r} to roll back"
        raise AliasNotFoundError(msg)
    stack: list[int] = []
    for event in history(model, alias):
        if event.from_version == event.to_version:
            continue
        if stack and stack[-1] == event.to_version:
            stack.pop()
        elif event.from_version is not None:
            stack.append(event.from_version)
    if stack:
        return stack[-1]
    msg = f"{model.name}@{alias} has no earlier version in its history to roll back to"
    raise RegistryError(msg)


# ================================================================================ gates

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_GATE_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][\w.\-/]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<rhs>@[A-Za-z0-9_\-]+|[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$"
)


@attrs.frozen
class Gate:
    """One promotion condition: ``metric op number`` or ``metric op @alias``."""

    metric: str
    op: str
    threshold: float | None = None
    alias: str | None = None

    def __str__(self) -> str:
        rhs = f"@{self.alias}" if self.alias else _number(self.threshold)
        return f"{self.metric} {self.op} {rhs}"


def _number(value: float | None) -> str:
    """``value`` short when that is exact (``0.9``, ``50``), else every digit it needs.

    Gates and rejection messages must show the values compared: ``{:g}`` alone would print
    0.9123451 and 0.9123454 both as ``0.912345``.
    """
    if value is None:
        return "None"
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


#: The gate that requires a signed version (see :mod:`registry_sdk.signing`).
SIGNED = "signed"


def parse_gate(text: str) -> Gate:
    """Parse ``"accuracy >= 0.9"`` or ``"accuracy >= @prod"``.

    Raises:
        ValueError: the text is not a gate; the message shows the accepted forms.
    """
    match = _GATE_RE.match(text)
    if not match:
        msg = (
            f"invalid gate {text!r}: write METRIC OP NUMBER or METRIC OP @ALIAS, "
            "with OP one of >=, <=, >, <, ==, != (e.g. 'accuracy >= 0.9', 'latency_ms <= @prod')"
        )
        raise ValueError(msg)
    rhs = match["rhs"]
    if rhs.startswith("@"):
        return Gate(match["metric"], match["op"], alias=rhs[1:])
    return Gate(match["metric"], match["op"], threshold=float(rhs))


GateLike = str | Gate | Callable[[ModelVersion], Any]


def _metrics_of(client: RegistryClient, mv: ModelVersion) -> dict[str, float]:
    """Metrics of a version: its ``registry_sdk.metrics.*`` tags, completed by its run's."""
    metrics: dict[str, float] = {}
    if mv.run_id:
        with suppress(NotFoundError):
            metrics.update(client.backend.get_run(mv.run_id).metrics)
    metrics.update(mv.metrics)
    return metrics


def check_gates(
    client: RegistryClient,
    mv: ModelVersion,
    gates: Sequence[GateLike],
    *,
    target: str | None = None,
    allow_missing: bool = False,
) -> list[tuple[str, bool, str]]:
    """Evaluate each gate: (gate, passed, what was compared).

    A gate against an alias no version holds fails (a typo of ``@prod`` must not pass), unless
    that alias is ``target``, the alias being promoted (its first promotion has nothing to
    beat), or ``allow_missing`` is true.
    """
    results: list[tuple[str, bool, str]] = []
    metrics: dict[str, float] | None = None
    for raw in gates:
        if isinstance(raw, str) and raw.strip() == SIGNED:
            results.append((SIGNED, *_signed(client, mv)))
            continue
        if callable(raw) and not isinstance(raw, Gate):
            outcome = raw(mv)
            passed, detail = outcome if isinstance(outcome, tuple) else (bool(outcome), "")
            label = getattr(raw, "__name__", repr(raw))
            results.append((label, bool(passed), str(detail) or ("passed" if passed else "failed")))
            continue
        gate = raw if isinstance(raw, Gate) else parse_gate(raw)
        if metrics is None:
            metrics = _metrics_of(client, mv)
        value = metrics.get(gate.metric)
        if value is None:
            results.append((str(gate), False, f"{mv.ref} has no metric {gate.metric!r}"))
            continue
        if gate.alias is not None:
            try:
                holder = client.resolve(ModelRef.of_alias(mv.name, gate.alias))
            except AliasNotFoundError:
                results.append(
                    (str(gate), *_missing_alias(client, mv.name, gate.alias, target, allow_missing))
                )
                continue
            other = _metrics_of(client, holder).get(gate.metric)
            if other is None:
                results.append((str(gate), True, f"{holder.ref} has no {gate.metric!r} to beat"))
                continue
            passed = _OPS[gate.op](value, other)
            detail = (
                f"{mv.ref}: {_number(value)} {gate.op} {holder.ref} (@{gate.alias}): "
                f"{_number(other)}"
            )
        else:
            assert gate.threshold is not None  # noqa: S101 - a numeric gate
            passed = _OPS[gate.op](value, gate.threshold)
            detail = (
                f"{mv.ref}: {gate.metric} = {_number(value)}, "
                f"required {gate.op} {_number(gate.threshold)}"
            )
        results.append((str(gate), passed, detail))
    return results


def _signed(client: RegistryClient, mv: ModelVersion) -> tuple[bool, str]:
    """The ``signed`` gate: the version carries a signature; verified where keys are set.

    With ``REGISTRY_SDK_VERIFY_KEY`` naming public keys or CA certificates, the version's files
    are fetched (into the cache) and checked against the signature, which must be by one of
    them.
    """
    from registry_sdk import signing

    if not mv.tags.get(signing.SIGNATURE_TAG):
        return False, f"{mv.ref} is not signed (no {signing.SIGNATURE_TAG} tag)"
    keys = signing.verify_keys()
    if not keys:
        return True, (
            f"{mv.ref} carries a signature (not verified: set {signing.VERIFY_KEY_ENV} to the "
            "public keys or CA certificates it must be by)"
        )
    try:
        client.pull(mv.ref, verify=keys)
    except SignatureError as exc:
        return False, str(exc)
    return True, f"{mv.ref} is signed by one of {', '.join(str(k) for k in keys)} and verified"


def _missing_alias(
    client: RegistryClient, name: str, alias: str, target: str | None, allow_missing: bool
) -> tuple[bool, str]:
    """Whether a gate against ``alias``, which no version of ``name`` holds, passes, and why."""
    if alias == target:
        return True, f"no version holds @{alias} yet"
    held = sorted(client.backend.get_model(name).aliases)
    if held:
        known = f"{name} has aliases {', '.join('@' + a for a in held)}"
        close = difflib.get_close_matches(alias, held, n=1)
        if close:
            known += f" (did you mean @{close[0]}?)"
    else:
        known = f"{name} has no aliases"
    if allow_missing:
        return True, f"no version holds @{alias}; passed as missing aliases are allowed ({known})"
    return False, (
        f"no version holds @{alias}; {known}; allow_missing=True (--allow-missing) "
        "lets a gate on a missing alias pass"
    )


def promotion_order(model: RegisteredModel) -> list[str]:
    """The model's promotion order (``registry_sdk.promotion_order`` tag), e.g. [staging, prod]."""
    raw = model.tags.get(_tags.PROMOTION_ORDER, "")
    return [a.strip() for a in raw.split(",") if a.strip()]


def order_problem(model: RegisteredModel, version: int, target: str) -> str | None:
    """Why ``version`` may not reach ``target`` yet under the promotion order, if it may not."""
    order = promotion_order(model)
    if target not in order or order.index(target) == 0:
        return None
    required = order[order.index(target) - 1]
    if model.aliases.get(required) == version:
        return None
    if any(e.alias == required and e.to_version == version for e in history(model, required)):
        return None
    return (
        f"promotion order {','.join(order)}: version {version} must reach "
        f"@{required} before @{target}"
    )


def promote(
    client: RegistryClient,
    mv: ModelVersion,
    *,
    to: str,
    require: Sequence[GateLike],
    reason: str | None,
    force: bool,
    allow_missing: bool = False,
) -> AliasEvent:
    """Move ``to`` to ``mv`` if every gate and the promotion order allow it (or ``force``)."""
    validate_alias(to)
    checked = check_gates(client, mv, require, target=to, allow_missing=allow_missing)
    failures = [f"{gate}: {detail}" for gate, passed, detail in checked if not passed]
    problem = order_problem(client.backend.get_model(mv.name), mv.version, to)
    if problem:
        failures.append(problem)
    if failures and not force:
        listing = "\n  - ".join(failures)
        msg = f"promotion of {mv.ref} to @{to} rejected:\n  - {listing}"
        raise PromotionRejectedError(msg, failures=failures)
    if failures:
        reason = f"{reason + '; ' if reason else ''}forced past: {'; '.join(failures)}"
    return move_alias(client, mv.name, to, mv.version, reason=reason, forced=bool(failures))


# ================================================================================ lineage


def lineage(client: RegistryClient, mv: ModelVersion) -> Lineage:
    """Everything recorded about how ``mv`` was made."""
    tags = mv.tags
    run = None
    if mv.run_id:
        try:
            run = client.backend.get_run(mv.run_id)
        except NotFoundError:
            run = None
    git = {
        key[len(_tags.PREFIX + "git.") :]: value
        for key, value in tags.items()
        if key.startswith(_tags.PREFIX + "git.")
    }
    code = {
        key[len(_tags.PREFIX + "code.") :]: value
        for key, value in tags.items()
        if key.startswith(_tags.PREFIX + "code.")
    }
    try:
        derived = json.loads(tags.get(_tags.DERIVED_FROM, "[]"))
    except ValueError:
        derived = []
    model = client.backend.get_model(mv.name)
    events = tuple(e for e in history(model) if mv.version in (e.to_version, e.from_version))
    return Lineage(
        version=mv,
        created_by=tags.get(_tags.CREATED_BY) or mv.user_id,
        run=run,
        git=git,
        code=code,
        environment=Environment.from_tags(tags),
        data=_data_fingerprints(tags),
        derived_from=tuple(str(d) for d in derived) if isinstance(derived, list) else (),
        alias_events=events,
    )


def _pairs(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def diff(client: RegistryClient, a: ModelVersion, b: ModelVersion) -> VersionDiff:
    """What differs between two versions: params, metrics (with deltas), packages, git, data."""
    la, lb = lineage(client, a), lineage(client, b)
    metrics: dict[str, tuple[float | None, float | None, float | None]] = {}
    for key, (x, y) in _pairs(la.metrics, lb.metrics).items():
        delta = y - x if x is not None and y is not None else None
        metrics[key] = (x, y, delta)
    env_a = la.environment.packages if la.environment else {}
    env_b = lb.environment.packages if lb.environment else {}
    return VersionDiff(
        a=a,
        b=b,
        params=_pairs(la.params, lb.params),
        metrics=metrics,
        packages=_pairs(env_a, env_b),
        git=_pairs(la.git, lb.git),
        data=_pairs(la.data, lb.data),
    )


# ================================================================================ stages

DEFAULT_STAGE_MAPPING = {"Production": "prod", "Staging": "staging"}


@attrs.frozen
class MigrationStep:
    """One alias a stage migration sets (or would set, in a dry run)."""

    name: str
    stage: str
    alias: str
    version: int
    previous: int | None
    applied: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


def migrate_stages(
    client: RegistryClient,
    names: Sequence[str],
    mapping: Mapping[str, str],
    *,
    dry_run: bool,
) -> list[MigrationStep]:
    """Give the newest version in each mapped stage the matching alias; idempotent."""
    canonical = {stage.capitalize(): alias for stage, alias in mapping.items()}
    for alias in canonical.values():
        validate_alias(alias)
    steps: list[MigrationStep] = []
    for name in names:
        model = client.backend.get_model(name)
        newest: dict[str, int] = {}
        for mv in client.search_versions(name):
            stage = mv.current_stage.capitalize()
            if stage in canonical:
                newest[stage] = max(newest.get(stage, 0), mv.version)
        for stage, version in sorted(newest.items()):
            alias = canonical[stage]
            current = model.aliases.get(alias)
            if current == version:
                continue
            if not dry_run:
                move_alias(client, name, alias, version, reason=f"migrated from stage {stage}")
            steps.append(MigrationStep(name, stage, alias, version, current, applied=not dry_run))
    return steps
