"""Griffe extension: numpydoc's Sphinx roles as links in the API reference.

The docstrings follow numpydoc, where ``:func:`~skltransfer.backbones.list_backbones```
and ``:class:`Backbone``` are cross-references. mkdocstrings renders Markdown,
which would show such roles as typed; this extension turns each into a code
span that links to the object when the reference documents it, and stays plain
code otherwise (a role naming a numpy or torch function, for instance).
"""

from __future__ import annotations

import re

import griffe

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
    """Rewrite the Sphinx roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None and ":`" in obj.docstring.value:
                obj.docstring.value = _ROLE.sub(
                    lambda m, o=obj: _replace(m, o), obj.docstring.value
                )
