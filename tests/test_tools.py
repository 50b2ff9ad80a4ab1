"""Smoke tests of the measuring tools under tools/ (they are scripts, not timed tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tools_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))


@pytest.mark.parametrize("generic", [False, True])
def test_profile_layers_prints_every_layer(tools_path, capsys, generic):
    import profile_layers

    args = [str(ROOT / "specs/lenet_mnist.yaml"), "--batch", "4", "--steps", "1"]
    assert profile_layers.main(args + (["--generic"] if generic else [])) == 0
    out = capsys.readouterr().out
    assert "| 2 | conv layer3 |" in out and "update" in out and "total" in out
    assert ("Numba" in out) == (not generic and "numba" in sys.modules)
