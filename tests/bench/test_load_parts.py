"""The load benchmark's parts that need no server: scripts, figures, balancer
configuration and the CRM audit (on an interaction log written from Rasa-like events)."""

from __future__ import annotations

from pathlib import Path

from bench.load_audit import compare, expected_from, rest_texts
from bench.load_drive import Conversation, Drive, Turn, TurnRecord, conversation
from bench.load_metrics import ProcessSample, by_position, process_figures
from bench.load_shapes import haproxy_config, nginx_config
from crm_bridge.interaction_log import InteractionLog
from tests.unit.test_interaction_log import conversation as logged_conversation


def test_scripts_are_padded_with_shop_questions_to_the_length() -> None:
    linked, proving = conversation(0, 30), conversation(1, 30)
    assert len(linked) == len(proving) == 30
    assert linked[0].kind == "chat" and linked[1].kind == "faq"
    assert any("return" in turn.text for turn in linked)
    assert proving[-1].text == "I want to talk to a human"
    # Too short a length keeps the whole flow.
    assert len(conversation(0, 1)) == 9 and len(conversation(1, 1)) == 7


def record(position: int, kind: str, ms: float) -> TurnRecord:
    return TurnRecord(0, position, kind, ms / 1000, ok=True, expected=True)


def test_turns_are_grouped_by_position_in_tens() -> None:
    records = [record(1, "faq", 10), record(10, "faq", 30), record(11, "crm", 50)]
    assert by_position(records) == [
        {"turns": "1-10", "count": 2, "mean_ms": 20.0},
        {"turns": "11-20", "count": 1, "mean_ms": 50.0},
    ]
    assert by_position(records, "crm") == [{"turns": "11-20", "count": 1, "mean_ms": 50.0}]


def test_postgres_backends_are_summed_into_one_row() -> None:
    before = {"rasa-1": ProcessSample(10, 900, 1000), "postgres:7": ProcessSample(1, 5, 5)}
    after = {
        "rasa-1": ProcessSample(12, 950, 1100),
        "postgres:7": ProcessSample(2, 6, 6),
        "postgres:8": ProcessSample(0.5, 4, 4),  # connected during the run
    }
    figures = process_figures(before, after, messages=100)
    assert figures["rasa-1"] == {
        "cpu_s": 2.0,
        "cpu_ms_per_message": 20.0,
        "rss_mb": 950.0,
        "peak_rss_mb": 1100.0,
    }
    assert figures["postgres"]["cpu_s"] == 1.5 and figures["postgres"]["peak_rss_mb"] == 10.0


def test_balancers_go_round_robin_over_every_server(tmp_path: Path) -> None:
    backends = ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]
    haproxy = haproxy_config(8080, backends)
    assert "balance roundrobin" in haproxy and "bind 127.0.0.1:8080" in haproxy
    assert "server rasa-2 127.0.0.1:5002" in haproxy
    nginx = nginx_config(8080, backends, tmp_path)
    assert "server 127.0.0.1:5001;" in nginx and "listen 127.0.0.1:8080;" in nginx


def test_a_reply_without_buttons_is_split_at_blank_lines_as_rest_sends_it() -> None:
    assert rest_texts("One.\n\nTwo.", has_buttons=False) == ["One.", "Two."]
    assert rest_texts("One.\n\nTwo.", has_buttons=True) == ["One.\n\nTwo."]


def drive_of(sender: str, replies: list[str]) -> Drive:
    script = [Turn("hi", "chat"), Turn("thanks 🙏", "chat")]
    records = [
        TurnRecord(0, n, "chat", 0.1, ok=True, expected=True, replies=[{"text": text}])
        for n, text in enumerate(replies, start=1)
    ]
    return Drive([Conversation(0, sender, script, records)], seconds=1.0)


def test_the_audit_matches_only_the_exact_transcript(crm_url: str) -> None:
    sender = "load-audit-0"
    InteractionLog(crm_url).record_events(logged_conversation(sender, 1_700_000_000.0))
    told = ["Hello! How can I help?", "You're welcome!"]
    audit = compare(expected_from(drive_of(sender, told)), crm_url, "load-audit-")
    assert audit["matches"] and audit["inbound_lines"] == {"expected": 2, "found": 2}

    other = compare(
        expected_from(drive_of(sender, [told[0], "Something else"])), crm_url, "load-audit-"
    )
    assert not other["matches"]
    assert other["mismatches"] == [
        {
            "sender": sender,
            "problem": "outbound differ",
            "detail": "2 lines, expected 2; the first difference at line 2",
        }
    ]
    missing = compare(expected_from(drive_of("load-audit-1", told)), crm_url, "load-audit-")
    assert not missing["matches"] and {m["problem"] for m in missing["mismatches"]} == {
        "missing",
        "unexpected",
    }


def test_the_audit_names_a_conversation_split_by_events_out_of_order(crm_url: str) -> None:
    """What two Rasa processes publishing to one queue can do (seen with two processes in
    docs/benchmarks.md): the second turn's events reach the log before the first turn's."""
    sender = "load-split-0"
    events = logged_conversation(sender, 1_700_000_000.0)
    first_turn, second_turn = events[:5], events[5:]
    log = InteractionLog(crm_url)
    log.record_events(second_turn)
    log.record_events(first_turn)
    told = ["Hello! How can I help?", "You're welcome!"]
    audit = compare(expected_from(drive_of(sender, told)), crm_url, "load-split-")
    assert not audit["matches"]
    assert audit["interactions"] == {"expected": 1, "found": 2}
    [split] = audit["mismatches"]  # the lines are all there, in two Interactions
    assert split["problem"] == "interactions differ" and split["detail"].startswith("2 ")
