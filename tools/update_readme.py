"""Rewrite the generated parts of README.md (the layer table) from the code.

Usage: python tools/update_readme.py [--check]   (--check exits 1 when README.md is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

from layerspec.docs import layer_table

BEGIN, END = "<!-- layer-table:begin -->", "<!-- layer-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def render(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{layer_table()}\n{END}{tail}"


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
