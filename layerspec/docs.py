"""Documentation generated from the layer classes, so the README cannot drift from the code.

``python tools/update_readme.py`` rewrites the README's layer table from :func:`layer_table`.
"""

from __future__ import annotations

import dataclasses

from .layers import LAYER_CLASSES
from .spec import layer_fields


def _default_text(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING:
        return "required"
    v = f.default
    if v is None:
        return "—"
    if isinstance(v, tuple):
        return "[" + " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) + "]"
    if isinstance(v, str):
        return f"'{v}'"
    return f"{v:g}" if isinstance(v, float) else str(v)


def layer_table() -> str:
    """A Markdown table: every layer type, its fields, their defaults and meaning."""
    lines = ["| type | field | default | meaning |", "|---|---|---|---|"]
    for ltype, cls in sorted(LAYER_CLASSES.items()):
        doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "`")
        fields = [f for name, f in layer_fields(cls).items()
                  if name not in ("name", "learningRate", "weightDecay")]
        if not fields:
            lines.append(f"| `{ltype}` | — | | {doc} |")
            continue
        for k, f in enumerate(fields):
            meaning = f.metadata.get("doc", "").replace("|", "\\|").replace("``", "`")
            lines.append(f"| {'`' + ltype + '`' if k == 0 else ''} | `{f.name}` | "
                         f"{_default_text(f)} | {meaning} |")
    lines.append("| *every type* | `name` | `layer<i>` | layer name |")
    lines.append("| *with weights* | `learningRate`, `weightDecay` | all 1 | per-weight "
                 "multipliers of the global rate and decay (cnn_train) |")
    return "\n".join(lines)
