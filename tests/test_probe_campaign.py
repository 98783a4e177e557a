"""The probe campaign of issue 13 (benchmarks/probe_campaign.py) ends with no failure:
0 obscure errors, 0 silently wrong results, 0 data loss, 0 concurrent client calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_campaign.py"
COLUMNS = ("clear error", "correct", "obscure error", "silently wrong", "data loss", "concurrent")


@pytest.mark.slow  # about 3 minutes on 2 cores
def test_probe_campaign_finds_nothing():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--examples", "40"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = done.stdout.splitlines()
    total = next(line for line in lines if line.startswith("all "))
    counts = dict(zip(COLUMNS, map(int, total.split()[1:-1]), strict=True))
    assert counts["clear error"] > 100 and counts["correct"] > 100, done.stdout
    failures = {name: counts[name] for name in COLUMNS[2:]}
    assert failures == dict.fromkeys(COLUMNS[2:], 0), done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
