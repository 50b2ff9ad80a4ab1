"""The README's generated layer table matches the code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_layer_table_is_current():
    rc = subprocess.run([sys.executable, str(ROOT / "tools" / "update_readme.py"), "--check"],
                        cwd=ROOT).returncode
    assert rc == 0, "README.md is stale: run python tools/update_readme.py"
