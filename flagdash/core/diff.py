"""Structural diff of two JSON-like values, as a flat list a person can read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # "added" | "removed" | "changed"
    old: Any = None
    new: Any = None


def _walk(path: str, old: Any, new: Any, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            _walk(sub, old.get(key, _MISSING), new.get(key, _MISSING), out)
        return
    if old is _MISSING:
        out.append(Change(path, "added", None, new))
    elif new is _MISSING:
        out.append(Change(path, "removed", old, None))
    elif old != new or isinstance(old, bool) != isinstance(new, bool):
        out.append(Change(path, "changed", old, new))


def diff(old: Any, new: Any) -> list[Change]:
    """Changes from ``old`` to ``new``; dicts are compared key by key, anything else whole."""
    out: list[Change] = []
    _walk("", {} if old is None else old, {} if new is None else new, out)
    return out
