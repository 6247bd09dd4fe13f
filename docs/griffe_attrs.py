"""A griffe extension for the API reference (mkdocs.yml). Not a page.

attrs writes the ``__init__`` of the layers and codecs at run time, so static analysis
sees no constructor. This takes the signature of the imported class instead, so that
the reference shows ``Files(path, suffix='', fsync=False, ...)``.
"""

from __future__ import annotations

import inspect
from typing import Any

import griffe


class AttrsSignatures(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if "__init__" in cls.members:
            return
        if not any(str(d.value).startswith("attrs.") for d in cls.decorators):
            return
        try:
            signature = inspect.signature(griffe.dynamic_import(cls.path))
        except Exception:
            return
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for parameter in signature.parameters.values():
            # A field with a converter has no annotation at run time: take the source's.
            field = cls.members.get(parameter.name)
            annotation = _text(parameter.annotation) or getattr(field, "annotation", None)
            parameters.append(
                griffe.Parameter(
                    parameter.name,
                    annotation=annotation,
                    kind=griffe.ParameterKind(parameter.kind.description),
                    default=_default(field, parameter.default),
                )
            )
        init = griffe.Function("__init__", parameters=griffe.Parameters(*parameters))
        cls.set_member("__init__", init)


def _text(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _default(field: Any, default: Any) -> str | None:
    """The default as written in the source (``pickle.HIGHEST_PROTOCOL``), unless it is
    inside ``attrs.field(...)``: then the value at run time (``time.time``)."""
    if default is inspect.Parameter.empty:
        return None
    written = getattr(field, "value", None)
    if written is not None and not str(written).startswith("attrs."):
        return str(written)
    if isinstance(default, str) and '"' not in default:
        return f'"{default}"'
    if callable(default) and hasattr(default, "__qualname__"):
        return f"{default.__module__}.{default.__qualname__}"
    return repr(default)
