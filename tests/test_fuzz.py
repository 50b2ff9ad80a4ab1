"""A short fuzzing run of the readers (the long campaign is ``python tools/fuzz.py``).

Property, for the spec loader (YAML text and bytes, and spec-like mappings), the expression
evaluator and the ``.m`` translator: every input loads or raises :class:`layerspec.SpecError`
(one line), within a time and a memory bound. The strategies live in tools/fuzz.py.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from layerspec.errors import ExpressionError
from layerspec.expr import evaluate

pytest.importorskip("hypothesis")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
try:
    import fuzz  # noqa: E402
finally:
    sys.path.pop(0)

#: inputs per target in the test suite (a second or two each); derandomized, so the same
#: inputs every run
EXAMPLES = {"yaml": 25, "dict": 50, "expr": 150, "mfile": 60}


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
    "reshape(1:1e9,1e5,1e4)", "ones(1,1e5)+ones(1e5,1)",
])
def test_huge_arrays_are_refused_before_allocation(text: str) -> None:
    """The evaluator refuses an array over its limit (5e7 elements) before allocating it."""
    target = fuzz.Target("expr", fuzz._evaluate)
    target.check(text)
    assert target.tally.refused == 1
    assert target.tally.peak < 16 * 2**20, f"{text}: {target.tally.peak / 2**20:.0f} MiB"


LIMIT = 10**6


@pytest.mark.parametrize("text", [
    "[ones(1,8e5) ones(1,8e5)]", "{ones(1,8e5), ones(1,8e5), ones(1,8e5), ones(1,8e5)}",
    "struct('a', ones(1,8e5), 'b', ones(1,8e5), 'c', ones(1,8e5))",
    "max(ones(1,8e5), ones(1,8e5))", "ones(1,8e5)(ones(1,8e5))",
    "ones(1,6e5)+(ones(1,6e5)+(ones(1,6e5)+(ones(1,6e5))))",
    "{{{ones(1,8e5)}}, {{ones(1,8e5)}}, {{ones(1,8e5)}}}",
])
def test_values_held_together_count_against_the_limit(text: str) -> None:
    """Operands, arguments and elements evaluated one after the other are all alive at once:
    together they may not exceed the limit, so an expression never holds more than about
    twice the limit (the held values and one result), whatever its length."""
    tracemalloc.start()
    try:
        with pytest.raises(ExpressionError, match="while the expression around it holds"):
            evaluate(text, rng=np.random.default_rng(0), max_elements=LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 8 * LIMIT, f"{peak / 2**20:.0f} MiB"


def test_values_within_the_limit_still_evaluate() -> None:
    assert evaluate("[ones(1,4e5) ones(1,4e5)]", max_elements=LIMIT).shape == (1, 800000)
    assert evaluate("max(ones(1,4e5), 2*ones(1,4e5))", max_elements=LIMIT).shape == (1, 400000)
