"""``bench.stress`` against the run's servers with tiny counts, so it cannot rot
(the figures are checked for sense, never against the timing goal)."""

from __future__ import annotations

import argparse

import pytest

from bench.stress import run
from tests.e2e.conftest import BotServers

pytestmark = pytest.mark.e2e


def test_the_stress_benchmark_measures_both_phases(bot_servers: BotServers) -> None:
    args = argparse.Namespace(
        turns=3, flood=6, flood_senders=2, flood_concurrency=3, oversized_every=3
    )
    report = run(bot_servers, args)
    assert report["flood_failed"] == 0  # every flood message, oversized ones too, answered
    assert isinstance(report["flood_answered"], int) and 0 < report["flood_answered"] <= 6
    for phase in ("alone", "flooded"):
        figures = report[phase]
        assert isinstance(figures, dict)
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert isinstance(report["flood_answered_per_s"], float) and report["flood_answered_per_s"] > 0
