"""Session-wide test hooks: print the MatConvNet reference table (tests/refcases.py)."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    refcases = sys.modules.get("refcases")
    lines = refcases.summary_lines() if refcases is not None else []
    if lines:
        terminalreporter.section("MatConvNet reference: worst relative error per case")
        for line in lines:
            terminalreporter.write_line(line)
