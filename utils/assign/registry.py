"""Assigners by name, so that a model YAML, a hyp file or --assigner can pick any of them."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from utils.assign.base import HEADS, Assigner

ASSIGNERS: dict[str, type[Assigner]] = {}
# what a head learns with when neither the model YAML, the hyp nor the caller names an assigner
DEFAULT_FOR_HEAD = {"anchor": "atss", "anchor-free": "tal"}


def register_assigner(name: str) -> Callable[[type[Assigner]], type[Assigner]]:
    """Class decorator: make an Assigner subclass available to ``build_assigner`` under ``name``."""

    def wrap(cls: type[Assigner]) -> type[Assigner]:
        if name in ASSIGNERS and ASSIGNERS[name] is not cls:
            raise KeyError(f"assigner {name!r} registered twice")
        if not cls.heads <= set(HEADS):
            raise ValueError(f"assigner {name!r}: heads {sorted(cls.heads)} not among {sorted(HEADS)}")
        cls.name = name
        ASSIGNERS[name] = cls
        return cls

    return wrap


def assigners_for(head: str) -> list[str]:
    """Names of the assigners that fit ``head`` ('anchor' or 'anchor-free')."""
    return sorted(n for n, c in ASSIGNERS.items() if head in c.heads)


def assigner_class(name: str, head: str | None = None) -> type[Assigner]:
    """The class registered as ``name``, checked to fit ``head`` when given; errors name the choices."""
    try:
        cls = ASSIGNERS[name]
    except KeyError:
        choices = sorted(ASSIGNERS) if head is None else assigners_for(head)
        raise ValueError(f"unknown assigner {name!r}; choose from {choices}") from None
    if head is not None and head not in cls.heads:
        raise ValueError(f"assigner {name!r} needs {cls.needs}, which {HEADS[head]} does not give; "
                         f"for this head choose from {assigners_for(head)}")
    return cls


def build_assigner(name: str, hyp: Mapping[str, Any], head: str | None = None) -> Assigner:
    """Assigner ``name`` ('iou', 'atss', 'tal', ...) configured from ``hyp``; see ``assigner_class``."""
    return assigner_class(name, head).from_hyp(hyp)
