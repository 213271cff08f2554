"""``bench.load``'s smoke counts against the run's servers (the embedded shape) and a bare
Rasa it starts itself, so the load benchmark cannot rot: the figures are checked for
sense and the audit must match, never a timing goal."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import SMOKE, Options, run
from bench.load_drive import conversation
from bench.load_report import print_report
from bench.load_shapes import Stack
from tests.e2e.conftest import BotServers

pytestmark = pytest.mark.e2e


def assert_sensible_latencies(figures: dict) -> None:
    for kind, summary in figures["latency"].items():
        assert summary["count"] > 0, kind
        assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]


def test_the_load_benchmark_drives_customers_and_audits_the_crm(
    bot_servers: BotServers, trained_model: Path, tmp_path: Path, capsys
) -> None:
    options = Options(**SMOKE)
    stack = Stack("embedded", bot_servers.webhook, bot_servers)
    report = run(stack, trained_model, tmp_path, options)

    sent = sum(len(conversation(c, options.turns)) for c in range(options.customers))
    ours, bare = report["stack"], report["bare_rasa"]
    assert (ours["messages"], ours["answered"], ours["errors"]) == (sent, sent, 0)
    assert ours["unexpected"] == []  # every scripted flow went as written
    assert set(ours["latency"]) == {"faq", "crm", "chat", "all"}
    assert_sensible_latencies(ours)
    assert ours["messages_per_s"] > 0
    assert [bucket["turns"] for bucket in ours["by_position"]] == ["1-10"]

    assert (bare["messages"], bare["errors"]) == (options.customers * options.bare_turns, 0)
    assert set(bare["latency"]) == {"faq", "all"}
    assert_sensible_latencies(bare)
    rasa = bare["processes"]["rasa (bare)"]
    assert rasa["cpu_s"] > 0 and 300 < rasa["rss_mb"] <= rasa["peak_rss_mb"]
    assert report["ratios"]["faq_p50"] > 0

    audit = report["audit"]
    assert audit["matches"], audit
    assert audit["interactions"] == {"expected": options.customers, "found": options.customers}
    assert audit["inbound_lines"] == {"expected": sent, "found": sent}
    assert audit["returns"]["found"] == 1 and audit["handoffs"]["found"] == 1

    print_report(report)
    assert "MATCHES" in capsys.readouterr().out
