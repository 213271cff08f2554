"""``python -m bench.server`` against the run's trained model, so the server benchmark
cannot rot (figures are checked for sanity, never against timing goals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def test_server_benchmark_reports_latency_and_memory(trained_model: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.csv"
    texts.write_text("text,category\n" + "".join(f"where is my order {n},x\n" for n in range(20)))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.server",
            "--model",
            str(trained_model),
            "--texts",
            str(texts),
            "--parses",
            "8",
            "--out",
            str(tmp_path),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((tmp_path / "server.json").read_text())
    assert report["parses"] == 8
    assert 0 < report["parse_ms_p50"] <= report["parse_ms_p99"]
    # A Rasa server with the model holds hundreds of MB; VmHWM is never below VmRSS.
    assert 300 < report["rss_mb"] <= report["peak_rss_mb"]
    assert "parse_ms_p99" in completed.stdout
