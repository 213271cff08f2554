"""``bench.slack_ack`` with tiny counts against servers it starts, so it cannot rot
(the figures are checked for sense, never against the timing goal)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.slack_ack import run

pytestmark = pytest.mark.e2e


def test_the_slack_ack_benchmark_measures_acks_and_replies(
    trained_model: Path, tmp_path: Path
) -> None:
    args = argparse.Namespace(events=10, rate=10.0, users=5, action_seconds=1.0, reply_wait=90.0)
    report = run(trained_model, tmp_path, args)
    assert report["acked_200"] == 10 and report["failed"] == 0
    assert 0 < report["ack_p50_ms"] <= report["ack_p95_ms"] <= report["ack_p99_ms"]
    assert report["ack_p99_ms"] <= report["ack_max_ms"]
    # Every customer heard back, and the slow action's "done" arrived: the action ran.
    assert report["users_answered"] == 5
    assert report["action_calls"] >= 10
    assert report["done_replies"] >= 5 and report["replies"] >= report["done_replies"]
