"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
SHELL_PYTHON = re.findall(r'^python -c "(.*)"$', README, re.M)


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_has_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 2 and SHELL_PYTHON


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(PYTHON_BLOCKS[index])
    out = run([sys.executable, str(script)], tmp_path)
    assert out.strip()


def test_thirty_seconds_output(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(PYTHON_BLOCKS[0])
    lines = run([sys.executable, str(script)], tmp_path).split()
    assert lines[:2] == ["1024", "81"] and lines[-1] == "4"


@pytest.mark.parametrize("code", SHELL_PYTHON)
def test_python_c_runs(code: str, tmp_path: Path) -> None:
    expected = str(sum(x * x for x in range(100)))
    assert run([sys.executable, "-c", code], tmp_path).strip() == expected
