"""The outbox benchmark's smoke run: a few conversations reach the fake CRMs, and the
figures it prints and writes add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.outbox import main


@pytest.mark.parametrize("backend", ["hubspot", "salesforce"])
def test_a_small_run_delivers_every_conversation(backend: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "outbox.json"
    argv = ["--backend", backend, "--conversations", "6", "--customers", "2", "--out", str(out)]
    assert main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["delivered"] == 6 and figures["backend"] == backend
    assert figures["conversations_per_second"] > 0 and figures["requests_at_fake"] >= 6
    assert 0 <= figures["delay_p50_s"] <= figures["delay_max_s"]
    assert "conversations_per_second" in capsys.readouterr().out
