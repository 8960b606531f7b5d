"""The public surface: what `registry_sdk.__all__` exports is intended, documented and sorted."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import registry_sdk
from registry_sdk import errors

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "reference" / "api.md"


def test_all_is_sorted_classes_first_and_complete():
    names = list(registry_sdk.__all__)
    public = [n for n in names if not n.startswith("_")]
    classes = [n for n in public if n[0].isupper()]
    functions = [n for n in public if not n[0].isupper()]
    assert public == sorted(classes) + sorted(functions)
    for name in names:
        assert hasattr(registry_sdk, name), name


def test_every_public_name_has_a_docstring():
    for name in registry_sdk.__all__:
        if name == "__version__":
            continue
        obj = getattr(registry_sdk, name)
        assert inspect.getdoc(obj), f"registry_sdk.{name} has no docstring"


def test_every_public_name_has_a_reference_entry():
    page = API_PAGE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: registry_sdk\.(\w+)\s*$", page, flags=re.MULTILINE))
    error_names = {n for n in errors.__all__ if n[0].isupper()}
    missing = {
        n
        for n in registry_sdk.__all__
        if n != "__version__" and n not in documented and n not in error_names
    }
    assert not missing, f"not in {API_PAGE.name}: {sorted(missing)}"
    assert "errors" in documented  # the whole error tree, documented by its module page


def test_every_public_method_of_the_client_has_a_docstring():
    for name, member in inspect.getmembers(registry_sdk.RegistryClient):
        if name.startswith("_"):
            continue
        assert inspect.getdoc(member), f"RegistryClient.{name} has no docstring"
