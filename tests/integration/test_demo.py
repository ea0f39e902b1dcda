"""``pel demo`` runs and reports what it measured."""

from __future__ import annotations

import io

from pel import _demo
from pel.cli import main


def test_demo_reports_both_workloads() -> None:
    out = io.StringIO()
    phases = _demo.run(out, workers=2, scale=0.02)
    text = out.getvalue()
    assert "2 worker processes" in text
    assert "Monte-Carlo" in text and "task graph" in text
    assert all(p.serial_seconds > 0 and p.parallel_seconds > 0 for p in phases)
    assert "pi ~ 3.1" in text


def test_cli_rejects_bad_workers(capsys: object) -> None:
    import pytest

    with pytest.raises(SystemExit):
        main(["demo", "--workers", "0"])
