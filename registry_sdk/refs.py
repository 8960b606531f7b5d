r"""Model references: the strings that name one version of a registered model.

Valid forms (each also with a ``models:/`` prefix):

========================  ==========================================================
``churn@prod``            the version the alias ``prod`` points at
``churn/7``               version 7
``churn@latest``          the newest version
``churn/Production``      the version in a legacy stage (Production, Staging, Archived)
========================  ==========================================================

A model name may hold letters, digits, spaces and punctuation, but not ``/``, ``:``, ``@`` or
``\\``, no control characters, no whitespace at either end, and it may not be ``.`` or ``..``;
at most 256 characters. An alias holds letters, digits, ``_`` and ``-``, at most 255 characters,
and may not look like a version (``v7``).
"""

from __future__ import annotations

import enum
import re
import unicodedata

import attrs

from registry_sdk.errors import InvalidReferenceError

__all__ = [
    "MAX_ALIAS_LENGTH",
    "MAX_NAME_LENGTH",
    "STAGES",
    "ModelRef",
    "RefKind",
    "parse_ref",
    "validate_alias",
    "validate_model_name",
]

MAX_NAME_LENGTH = 256
MAX_ALIAS_LENGTH = 255
#: Legacy stages a reference may name, in MLflow's canonical spelling.
STAGES = ("Production", "Staging", "Archived")
_STAGE_BY_LOWER = {s.lower(): s for s in STAGES}
_ALIAS_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_VERSION_LIKE_ALIAS = re.compile(r"^[vV]\d+$")
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,17}$")
_FORBIDDEN_NAME_CHARS = frozenset("/:@\\")
_PREFIX = "models:/"

_FORMS = (
    "valid forms are NAME@ALIAS, NAME/VERSION, NAME@latest and NAME/STAGE "
    "(Production, Staging or Archived), optionally prefixed with 'models:/'"
)


class RefKind(enum.Enum):
    """Which of the reference forms a :class:`ModelRef` is."""

    VERSION = "version"
    ALIAS = "alias"
    LATEST = "latest"
    STAGE = "stage"


def _fail(text: str, problem: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid model reference {text!r}: {problem}; {_FORMS}")


def _name_problem(name: str) -> str | None:
    if not name:
        return "the model name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"the model name is {len(name)} characters long, at most {MAX_NAME_LENGTH} are allowed"
        )
    if name != name.strip():
        return "the model name starts or ends with whitespace"
    if name in {".", ".."}:
        return f"the model name {name!r} is a path, not a name"
    for ch in name:
        if ch in _FORBIDDEN_NAME_CHARS:
            return f"the model name contains {ch!r}, which names may not contain (/ : @ \\)"
        category = unicodedata.category(ch)
        if category[0] == "C":
            return f"the model name contains the control character U+{ord(ch):04X}"
        if category[0] == "Z" and ch != " ":
            return f"the model name contains the whitespace character U+{ord(ch):04X}"
    return None


def _alias_problem(alias: str) -> str | None:
    if not alias:
        return "the alias is empty"
    if len(alias) > MAX_ALIAS_LENGTH:
        return f"the alias is {len(alias)} characters long, at most {MAX_ALIAS_LENGTH} are allowed"
    # fullmatch, not match: "$" also matches before a trailing newline ("prod\n").
    if not _ALIAS_RE.fullmatch(alias):
        return f"the alias {alias!r} may only contain letters, digits, '_' and '-'"
    if _VERSION_LIKE_ALIAS.fullmatch(alias):
        return f"the alias {alias!r} looks like a version; write NAME/{alias[1:]} for a version"
    return None


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name; else raise :class:`InvalidReferenceError`."""
    if not isinstance(name, str):
        msg = f"a model name must be a string, not {type(name).__name__}"
        raise InvalidReferenceError(msg)
    problem = _name_problem(name)
    if problem:
        msg = f"invalid model name {name!r}: {problem}"
        raise InvalidReferenceError(msg)
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias name (not ``latest``); else raise an error."""
    if not isinstance(alias, str):
        msg = f"an alias must be a string, not {type(alias).__name__}"
        raise InvalidReferenceError(msg)
    problem = _alias_problem(alias)
    if problem is None and alias.lower() == "latest":
        problem = "'latest' is reserved for the newest version and cannot be set as an alias"
    if problem:
        msg = f"invalid alias {alias!r}: {problem}"
        raise InvalidReferenceError(msg)
    return alias


@attrs.frozen
class ModelRef:
    """A parsed, validated model reference.

    Build one with :func:`parse_ref` or the ``of_*`` constructors; ``str(ref)`` gives it back
    in canonical form and ``ref.uri`` as a ``models:/`` URI that vanilla MLflow accepts.
    """

    name: str
    kind: RefKind
    version: int | None = None
    alias: str | None = None
    stage: str | None = None

    def __attrs_post_init__(self) -> None:
        problem = _name_problem(self.name) if isinstance(self.name, str) else "name is not a string"
        if problem is None:
            problem = self._target_problem()
        if problem:
            msg = f"{self.name}"
            raise _fail(msg, problem)

    def _target_problem(self) -> str | None:
        fields = {"version": self.version, "alias": self.alias, "stage": self.stage}
        wanted = {RefKind.VERSION: "version", RefKind.ALIAS: "alias", RefKind.STAGE: "stage"}.get(
            self.kind
        )
        extra = [k for k, v in fields.items() if v is not None and k != wanted]
        if extra:
            return f"a {self.kind.value} reference cannot also set {', '.join(extra)}"
        if self.kind is RefKind.VERSION:
            if isinstance(self.version, bool) or not isinstance(self.version, int):
                return "the version must be an integer"
            if self.version < 1:
                return f"version {self.version} is not a positive integer"
        elif self.kind is RefKind.ALIAS:
            if not isinstance(self.alias, str):
                return "the alias must be a string"
            problem = _alias_problem(self.alias)
            if problem is None and self.alias.lower() == "latest":
                problem = "use RefKind.LATEST for the newest version"
            return problem
        elif self.kind is RefKind.STAGE and self.stage not in STAGES:
            return f"the stage {self.stage!r} is not one of {', '.join(STAGES)}"
        return None

    @classmethod
    def of_version(cls, name: str, version: int) -> ModelRef:
        """A reference to version ``version`` of ``name``."""
        return cls(name, RefKind.VERSION, version=version)

    @classmethod
    def of_alias(cls, name: str, alias: str) -> ModelRef:
        """A reference to the version the alias points at (``latest`` gives :meth:`of_latest`)."""
        if alias.lower() == "latest":
            return cls.of_latest(name)
        return cls(name, RefKind.ALIAS, alias=alias)

    @classmethod
    def of_latest(cls, name: str) -> ModelRef:
        """A reference to the newest version of ``name``."""
        return cls(name, RefKind.LATEST)

    @classmethod
    def of_stage(cls, name: str, stage: str) -> ModelRef:
        """A reference to the version in a legacy stage (case-insensitive)."""
        return cls(name, RefKind.STAGE, stage=_STAGE_BY_LOWER.get(stage.lower(), stage))

    def __str__(self) -> str:
        if self.kind is RefKind.VERSION:
            return f"{self.name}/{self.version}"
        if self.kind is RefKind.ALIAS:
            return f"{self.name}@{self.alias}"
        if self.kind is RefKind.LATEST:
            return f"{self.name}@latest"
        return f"{self.name}/{self.stage}"

    @property
    def uri(self) -> str:
        """The reference as a ``models:/`` URI, as vanilla MLflow writes it."""
        return f"{_PREFIX}{self}"


def parse_ref(text: str | ModelRef) -> ModelRef:
    """Parse a model reference such as ``churn@prod`` or ``models:/churn/7``.

    Raises:
        InvalidReferenceError: the text is not one of the valid forms; the message says what
            was wrong and lists the valid forms.
    """
    if isinstance(text, ModelRef):
        return text
    if not isinstance(text, str):
        msg = f"a model reference must be a string, not {type(text).__name__}; {_FORMS}"
        raise InvalidReferenceError(msg)
    body = text.removeprefix(_PREFIX)
    if not body:
        raise _fail(text, "it is empty")
    problem = _separator_problem(body)
    if problem:
        raise _fail(text, problem)
    at = body.rfind("@")
    slash = body.rfind("/")
    if at < 0 and slash < 0:
        raise _fail(text, "it names a model but no version, alias or stage")
    if at > slash:
        return _parse_alias(text, body[:at], body[at + 1 :])
    return _parse_slash(text, body[:slash], body[slash + 1 :])


def _separator_problem(body: str) -> str | None:
    """What is wrong with the '@' and '/' that split ``body``, before either part is read.

    A name may contain neither, so more than one separator is a mistake: said as what it most
    likely is (a doubled '@', a stray '@' at the end, an alias and a version at once), with
    the reference that was probably meant.
    """
    ats = body.count("@")
    if "@@" in body:
        name, _, alias = body.partition("@@")
        meant = f"{name or 'NAME'}@{alias.lstrip('@') or 'ALIAS'}"
        return f"'@@' doubles the '@' between the model name and the alias; write {meant}"
    if ats > 1 and body.endswith("@"):
        return f"it ends with a stray '@'; write {body.rstrip('@')}"
    if ats > 1:
        return f"it has {ats} '@' but one goes between the model name and the alias (NAME@ALIAS)"
    if ats == 1 and "/" in body:
        name, _, rest = body.partition("@")
        if "/" in rest and name and "/" not in name:
            alias, _, target = rest.partition("/")
            if not target:
                return f"it ends with '/' after the alias; write {name}@{alias}"
            return (
                f"it names both an alias and {target!r}; write {name}@{alias} for the alias "
                f"or {name}/{target} for a version or stage"
            )
        head, _, target = name.partition("/")
        if head and (_VERSION_RE.fullmatch(target) or target.lower() in _STAGE_BY_LOWER):
            return (
                f"it names both {target!r} and an alias; write {head}/{target} for the version "
                f"or stage or {head}@{rest} for the alias"
            )
    return None


def _parse_alias(text: str, name: str, target: str) -> ModelRef:
    _check_name(text, name)
    if not target:
        raise _fail(text, f"the alias after '@' is empty; write {name}@ALIAS, e.g. {name}@prod")
    if target.lower() == "latest":
        return ModelRef.of_latest(name)
    problem = _alias_problem(target)
    if problem:
        raise _fail(text, problem)
    return ModelRef.of_alias(name, target)


def _parse_slash(text: str, name: str, target: str) -> ModelRef:
    _check_name(text, name)
    if not target:
        raise _fail(text, "the version or stage after '/' is empty")
    if _VERSION_RE.fullmatch(target):
        return ModelRef.of_version(name, int(target))
    if target.lower() in _STAGE_BY_LOWER:
        return ModelRef.of_stage(name, target)
    if target.lower() == "latest":  # MLflow's own models:/name/latest
        return ModelRef.of_latest(name)
    raise _fail(
        text, f"{target!r} after '/' is neither a version number (1, 2, ...) nor a legacy stage"
    )


def _check_name(text: str, name: str) -> None:
    problem = _name_problem(name)
    if problem:
        raise _fail(text, problem)
