"""Griffe extension: numpydoc docstrings as the API reference should show them.

- In numpydoc docstrings, ``:func:`~skltransfer.backbones.list_backbones```
  and ``:class:`Backbone``` are cross-references. mkdocstrings renders Markdown,
  which would show such roles as typed; each becomes a code span that links to
  the object when the reference documents it, and stays plain code otherwise
  (a role naming a numpy or torch function, for instance).
- Inspected at run time, a class attribute or dataclass field holding a plain
  value (``std = 0.1``) takes the docstring of the value's type ("Convert a
  string or number to a floating point number..."). Those docstrings are
  dropped, so the attribute is not listed; the class's Parameters section
  documents it.
"""

from __future__ import annotations

import inspect
import re

import griffe

_TYPE_DOCS = {
    inspect.getdoc(t)
    for t in (bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)
}

_ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc|const|ref)"
    r":`(?P<tilde>~?)(?P<body>[^`]+)`"
)


def _identifier(obj: griffe.Object, target: str) -> str:
    """The full path ``target`` names where ``obj`` is documented."""
    scope = obj if obj.is_class or obj.is_module else obj.parent
    head = target.split(".", 1)[0]
    try:
        resolved = scope.resolve(head)
    except (griffe.NameResolutionError, AttributeError):
        return target
    return resolved + target[len(head) :]


def _replace(match: re.Match, obj: griffe.Object) -> str:
    body = match["body"].strip()
    label, _, target = body.partition("<")
    if target:  # :role:`shown text <target>`
        label, target = label.strip(), target.rstrip(">").strip()
    else:
        target = body.lstrip(".")
        label = target.rsplit(".", 1)[-1] if match["tilde"] else target
    identifier = _identifier(obj, target)
    return f'<autoref identifier="{identifier}" optional><code>{label}</code></autoref>'


def _objects(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrite the docstrings of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _objects(pkg):
            if obj.docstring is None:
                continue
            if obj.is_attribute and obj.docstring.value in _TYPE_DOCS:
                obj.docstring = None
            elif ":`" in obj.docstring.value:
                obj.docstring.value = _ROLE.sub(
                    lambda m, o=obj: _replace(m, o), obj.docstring.value
                )
