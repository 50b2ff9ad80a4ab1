"""A short fuzzing run of the readers (the long campaign is ``python tools/fuzz.py``).

Property, for the spec loader (YAML text and bytes, and spec-like mappings), the expression
evaluator and the ``.m`` translator: every input loads or raises :class:`layerspec.SpecError`
(one line), within a time and a memory bound. The strategies live in tools/fuzz.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
try:
    import fuzz  # noqa: E402
finally:
    sys.path.pop(0)

#: inputs per target in the test suite (a second or two each); derandomized, so the same
#: inputs every run
EXAMPLES = {"yaml": 60, "dict": 120, "expr": 300, "mfile": 150}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fuzz(name: str, tmp_path: Path) -> None:
    target, strategy = fuzz.targets(tmp_path)[name]
    fuzz.run_target(target, strategy, EXAMPLES[name])
    tally = target.tally
    assert tally.inputs >= EXAMPLES[name] // 2
    assert tally.refused > 0
    if name != "yaml":  # mutated YAML rarely loads; the others must load sometimes
        assert tally.loaded > 0


@pytest.mark.parametrize("text", [
    "zeros(1e9,1e9)", "ones(1,2^40,'single')", "randn(50000,50000)", "repmat(1,1e5,1e5)",
    "zeros(1e9,1e9)*0", "ones(2^31,1)'", "linspace(0,1,1e12)", "cell(1e6,1e6)",
    "reshape(1:1e9,1e5,1e4)", "[ones(1,4e7) ones(1,4e7)]",
])
def test_huge_arrays_are_refused_before_allocation(text: str) -> None:
    """The evaluator refuses an array over its limit before allocating it."""
    fuzz.Target("expr", fuzz._evaluate).check(text)
    target = fuzz.Target("expr", fuzz._evaluate)
    target.check(text)
    assert target.tally.refused == 1
    assert target.tally.peak < 64 * 2**20, f"{text}: {target.tally.peak / 2**20:.0f} MiB"
