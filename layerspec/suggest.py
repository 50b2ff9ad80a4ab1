""""Did you mean ...?" suggestions for misspelt names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (case-insensitive), or None when none is close."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered:
        return lowered[name.lower()]
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hits[0]] if hits else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or, when nothing is close, `` (expected one of a, b, c)``."""
    cands = sorted(candidates)
    hit = closest(name, cands)
    if hit is not None:
        return f" (did you mean '{hit}'?)"
    return f" (expected one of: {', '.join(cands)})"
