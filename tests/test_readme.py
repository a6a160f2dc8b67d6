"""The README's examples run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_fresh_machine_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1).splitlines()
    assert first_block[0].startswith("make demo") and first_block[1].startswith("make test")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_write_your_own_shaper_example_works_as_printed():
    (block,) = [b for b in python_blocks() if "@register_shaper" in b]
    out = subprocess.run([sys.executable, "-c", block], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    printed = re.search(r"print\(info\[\"reward_terms\"\]\)\s+# (.*)", block).group(1)
    assert out.strip() == printed.strip()


def test_quick_tour_runs():
    (block,) = [b for b in python_blocks() if "Quick tour" in README and "env.step(\"8 + 6" in b]
    subprocess.run([sys.executable, "-c", block], check=True, capture_output=True, cwd=ROOT)
