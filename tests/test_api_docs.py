"""Every object the API reference renders documents each of its parameters.

The reference (docs/api/*.md) renders docstrings with mkdocstrings; a
parameter missing from a numpydoc ``Parameters`` section would be missing
from the page.
"""

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
PATHS = [
    path
    for page in PAGES
    for path in re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.M)
]
SKIPPED = {"self", "cls"}


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), name)


def _documented(obj) -> list:
    """``obj``, or the public members of a module, that take parameters."""
    if inspect.ismodule(obj):
        return [getattr(obj, name) for name in obj.__all__]
    return [obj]


def _parameters(obj) -> list[str]:
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return []
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [
        name
        for name, p in signature.parameters.items()
        if name not in SKIPPED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _documented_names(doc: str) -> set[str]:
    """The names of a numpydoc Parameters section (``a, b : type`` lines)."""
    match = re.search(r"^Parameters\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not match:
        return set()
    headers = re.findall(r"^(\S[^\n]*?)(?: :.*)?$", match.group(1), re.M)
    return {name.strip() for header in headers for name in header.split(",")}


def test_pages_list_objects():
    assert PATHS


@pytest.mark.parametrize("path", PATHS)
def test_parameters_documented(path):
    for obj in _documented(_resolve(path)):
        names = _parameters(obj)
        if not names:
            continue
        documented = _documented_names(inspect.getdoc(obj) or "")
        missing = [name for name in names if name not in documented]
        assert not missing, f"{obj.__qualname__}: parameters {missing} undocumented"
