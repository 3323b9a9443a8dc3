"""Command-line flags read from a function's signature, so that a command and the function it calls share one set
of defaults: ``add_flags(parser, optik.evaluate, {...})`` adds a flag per parameter, and
``optik.evaluate(**call_args(args, optik.evaluate))`` calls it with what was parsed.

The signature gives the flag (``--top-k`` for ``top_k``), the default, the type (``int`` and ``float`` annotations
convert; other values stay strings, which the function checks) and the kind of argument:

- a parameter before ``*`` is a positional argument (optional, ``nargs="?"``, when it has a default);
- a keyword-only parameter without a default is a required flag;
- a ``bool`` is a switch: ``--name`` for a default False, ``--no-name`` (setting False) for a default True.

The spec says what a signature cannot, per parameter: a help text, or a dict of ``add_argument`` settings
(``help``, ``metavar``, ``choices``, ``nargs``, ``type``) plus

- ``flag``: the name on the command line when it is not the parameter's (``--bootstrap`` for ``n_boot``); a
  positional parameter given a flag becomes a flag, required unless it has a default;
- ``default``: the command's own default, where the function has none or its default means something else on the
  command line (the file a command writes);
- ``group``: parameters naming the same group are mutually exclusive.

- ``kwargs``: True for a flag that is no parameter but goes to the function's ``**kwargs`` (default None: the
  callee's own default); :func:`call_args` leaves it to the caller.

Flags come in the spec's order, then the parameters the spec leaves out, in the signature's order.
"""
from __future__ import annotations

import argparse
import inspect
from typing import Any, Callable, Iterable, Mapping

Spec = Mapping[str, "str | Mapping[str, Any]"]
TYPES = {"bool": bool, "int": int, "float": float}
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def parameters(func: Callable) -> dict[str, inspect.Parameter]:
    """The named parameters of ``func`` (not ``*args`` / ``**kwargs``), in order."""
    return {name: p for name, p in inspect.signature(func).parameters.items() if p.kind not in VARIADIC}


def annotation_type(annotation: Any) -> type | None:
    """``bool``, ``int`` or ``float`` when the annotation's first member is one (``int | None`` -> int), else None."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return TYPES.get(text.split("|")[0].strip())


def add_flags(parser: argparse.ArgumentParser, func: Callable, spec: Spec | None = None, *,
              skip: Iterable[str] = (), only: Iterable[str] | None = None) -> None:
    """Add a flag or positional argument to ``parser`` per parameter of ``func`` (see the module docstring); leave
    out the names in ``skip``, or all but those in ``only``."""
    spec = {name: {"help": s} if isinstance(s, str) else dict(s) for name, s in (spec or {}).items()}
    params = parameters(func)
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(func).parameters.values())
    skip, only = set(skip), None if only is None else set(only)
    groups: dict[str, Any] = {}
    for name in [*spec, *(n for n in params if n not in spec)]:
        if name in skip or (only is not None and name not in only):
            continue
        settings = dict(spec.get(name, {}))
        if name not in params and not (settings.pop("kwargs", False) and takes_kwargs):
            raise TypeError(f"expected a parameter of {func.__qualname__} in the spec (or an option marked kwargs "
                            f"for its **kwargs), got {name!r}; it has {', '.join(params)}")
        group = settings.pop("group", None)
        if group is not None and group not in groups:
            groups[group] = parser.add_mutually_exclusive_group()
        where = parser if group is None else groups[group]
        names, settings = _argument(name, params.get(name), settings)
        where.add_argument(*names, **settings)


def _argument(name: str, param: inspect.Parameter | None, settings: dict) -> tuple[list[str], dict]:
    """``add_argument``'s names and settings for one parameter (None: a ``**kwargs`` option) and its spec."""
    has_default = param is None or param.default is not inspect.Parameter.empty or "default" in settings
    default = settings.pop("default", None if param is None or not has_default else param.default)
    kind = settings.pop("type", None) or (annotation_type(param.annotation) if param is not None else None)
    flag = settings.pop("flag", None)
    if flag is None and param is not None and param.kind is not inspect.Parameter.KEYWORD_ONLY:
        return [name], {**({"type": kind} if kind not in (None, bool) else {}),
                        **({"nargs": "?", "default": default} if has_default else {}), **settings}
    if kind is bool:
        off = default is True
        return [flag or f"--{'no-' if off else ''}{name.replace('_', '-')}"], {
            "dest": name, "action": "store_false" if off else "store_true", **settings}
    return [flag or "--" + name.replace("_", "-")], {
        "dest": name, "default": default, **({"type": kind} if kind else {}),
        **({} if has_default else {"required": True}), **settings}


def call_args(args: argparse.Namespace, func: Callable, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``func`` that were parsed into ``args`` (by :func:`add_flags`), ``overrides`` on
    top; the parameters that were not parsed keep the function's defaults."""
    return {**{name: getattr(args, name) for name in parameters(func) if hasattr(args, name)}, **overrides}


__all__ = ["add_flags", "annotation_type", "call_args", "parameters"]
