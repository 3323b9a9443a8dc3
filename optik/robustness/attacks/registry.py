"""Attacks by name: one registry that the robustness curve, ``optik attack``, the playground, :func:`optik.attack`
and the tests read. An attack registers where it is defined::

    @ATTACKS.register("pgd", budget="fixed", norms=("linf", "l2"), iterative=True, playground="PGD (Linf)")
    class PGD(Attack): ...

and :func:`make_attack` builds it by name. What a registration says (:class:`AttackSpec`) is checked when it is
made: a missing or unknown key, a budget or norm optik does not know, raises there, not at the first attack.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from torch import nn

from optik.core.errors import ConfigError
from optik.core.registry import Registry
from optik.robustness.attacks.base import NORMS, Attack

BUDGETS = ("fixed", "minimal")


@dataclass(frozen=True)
class AttackSpec:
    """What a registered attack declares, for everything that lists or runs attacks by name.

    Attributes:
        name: the registered name (``optik attack --method``).
        budget: ``fixed``: ``eps`` is the radius every image may move within, and a robustness curve runs the
            attack once per eps; ``minimal``: the attack is unbounded and looks for the smallest perturbation
            (Carlini-Wagner), so it runs once and each eps becomes a threshold on the norm it found.
        norms: the norms ``eps`` can be measured in; the first is the default.
        iterative: many gradient steps; the curve also runs one-step FGSM at the same Linf eps as a reference (an
            iterative attack weaker than one step points at gradient masking or a bug), and the playground hands
            it its steps slider.
        playground: the label the playground offers it under (None: not offered; it runs on one image while a
            person waits).
        options: constructor options the name implies (``pgd-l2`` is PGD with ``norm="l2"``); options given to
            :func:`make_attack` override them.
    """

    name: str
    budget: str
    norms: tuple[str, ...]
    iterative: bool = False
    playground: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.budget not in BUDGETS:
            raise ValueError(f"attack {self.name!r}: expected budget one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if not self.norms or any(n not in NORMS for n in self.norms):
            raise ValueError(f"attack {self.name!r}: expected norms among {', '.join(NORMS)}, got {self.norms!r}")
        if self.options.get("norm", self.norms[0]) not in self.norms:
            raise ValueError(f"attack {self.name!r}: its options' norm {self.options['norm']!r} is not one of its "
                             f"norms {self.norms!r}")

    @property
    def norm(self) -> str:
        """The norm ``eps`` is measured in unless ``norm`` is given."""
        return self.options.get("norm", self.norms[0])

    @property
    def minimal(self) -> bool:
        return self.budget == "minimal"


class AttackRegistry(Registry[Attack]):
    """The :class:`~optik.core.registry.Registry` of attacks: every entry's meta is an :class:`AttackSpec` (checked
    on registration), an unknown name gets the ``--method`` choices and the closest names, and iterating yields the
    names (as iterating the dict it replaced did)."""

    def add(self, name: str, factory: Callable[..., Attack], *, summary: str = "", **meta: Any) -> None:
        fields = {f.name for f in dataclasses.fields(AttackSpec)} - {"name"}
        unknown = sorted(set(meta) - fields)
        if unknown:
            raise ValueError(f"attack {name!r}: unknown registration keys {', '.join(unknown)}; "
                             f"expected some of {', '.join(sorted(fields))}")
        meta["norms"] = tuple(meta.get("norms") or ())
        spec = AttackSpec(name, **meta)
        summary = summary or (factory.__doc__ or "").strip().split("\n")[0]
        super().add(name, factory, summary=summary, **{f: getattr(spec, f) for f in fields})

    def get(self, name: str):
        if name not in self:
            close = difflib.get_close_matches(name.lower(), self.names(), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"expected --method one of {', '.join(self.names())}, got {name!r}{hint}")
        return super().get(name)

    def spec(self, name: str) -> AttackSpec:
        entry = self.get(name)
        return AttackSpec(entry.name, **entry.meta)

    def specs(self, pattern: str = "*") -> list[AttackSpec]:
        return [self.spec(n) for n in self.names(pattern)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


ATTACKS = AttackRegistry("attack")
register_attack = ATTACKS.register


def list_attacks(pattern: str = "*") -> list[dict]:
    """One row per registered attack matching the glob ``pattern``: name, summary and what it declares."""
    return [{"name": s.name, "summary": ATTACKS.get(s.name).summary, "budget": s.budget, "norms": list(s.norms),
             "iterative": s.iterative, "playground": s.playground, "options": dict(s.options)}
            for s in ATTACKS.specs(pattern)]


def attack_norm(method: str, options: Mapping[str, Any] | None = None) -> str:
    """The norm the attack registered as ``method`` measures eps in (``norm`` in ``options`` overrides it)."""
    if (options or {}).get("norm"):
        return options["norm"]
    return ATTACKS.spec(method).norm


def make_attack(method: str, model: nn.Module, *, eps: float | None, **kw) -> Attack:
    """The attack registered as ``method`` (``optik attack --method``), with the options its name implies, then
    ``kw``. An option its class does not take, or a norm it does not measure in, raises and lists what it takes.

    ``norm`` is only passed on to attacks that measure in more than one norm (or whose name sets it); to the others
    their own norm is accepted and dropped.
    """
    spec, factory = ATTACKS.spec(method), ATTACKS.get(method).factory
    kw = {**spec.options, **kw}
    if kw.get("norm") is not None and kw["norm"] not in spec.norms:
        raise ConfigError(f"{method} measures eps in {' or '.join(spec.norms)}, got norm {kw['norm']!r}")
    if len(spec.norms) == 1 and "norm" not in spec.options:
        kw.pop("norm", None)
    accepted = _options(factory)
    unknown = sorted(set(kw) - accepted)
    if unknown:
        raise ConfigError(f"{method} takes no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted))}")
    return factory(model, eps=eps, **kw)


def _options(factory: Callable[..., Attack]) -> set[str]:
    """Keyword options of an attack: the named parameters of every ``__init__`` along its class's MRO (or of the
    factory function), without ``self`` and ``model``."""
    functions = [c.__init__ for c in factory.__mro__ if "__init__" in vars(c) and c is not object] \
        if isinstance(factory, type) else [factory]
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for f in functions for name, p in inspect.signature(f).parameters.items() if p.kind in named} \
        - {"self", "model"}


def methods_help() -> str:
    """``optik attack --method``'s help: every registered name with its one-line summary."""
    return " | ".join(f"{e.name} ({e.summary})" for e in ATTACKS.entries())
