"""The printed table of ``python -m bench.load`` and its ratios to bare Rasa."""

from __future__ import annotations

from typing import Any


def _ratio(ours: float | None, bare: float | None) -> float | None:
    if not ours or not bare:
        return None
    return round(ours / bare, 2)


def ratios(stack: dict[str, Any], bare: dict[str, Any]) -> dict[str, float | None]:
    """The stack's figures as multiples of bare Rasa's on the same machine: shop-question
    latency (how many times slower), throughput and server CPU per message. Bare Rasa's
    conversations are shop questions only, the stack's mix in CRM turns: its messages/s
    and CPU per message are those of the whole mix."""
    ours, theirs = stack["latency"].get("faq", {}), bare["latency"].get("faq", {})
    return {
        **{
            f"faq_{q}": _ratio(ours.get(f"{q}_ms"), theirs.get(f"{q}_ms"))
            for q in ("p50", "p95", "p99")
        },
        "messages_per_s": _ratio(stack["messages_per_s"], bare["messages_per_s"]),
        "server_cpu_ms_per_message": _ratio(
            stack.get("server_cpu_ms_per_message"), bare.get("server_cpu_ms_per_message")
        ),
    }


def _percentiles(figures: dict[str, Any], kind: str) -> str:
    summary = figures.get("latency", {}).get(kind, {})
    if not summary.get("count"):
        return "-"
    return f"{summary['p50_ms']:.0f} / {summary['p95_ms']:.0f} / {summary['p99_ms']:.0f}"


def _positions(figures: dict[str, Any]) -> tuple[str, str]:
    buckets = figures.get("faq_by_position") or []
    if not buckets:
        return "-", "-"
    first, last = buckets[0], buckets[-1]
    return (
        f"{first['mean_ms']:.0f} ms (turns {first['turns']})",
        f"{last['mean_ms']:.0f} ms (turns {last['turns']})",
    )


def _table_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    stack, bare, ratio = report["stack"], report["bare_rasa"] or {}, report["ratios"]

    def shown(value: Any) -> str:
        return "-" if value is None else str(value)

    first, last = _positions(stack)
    bare_first, bare_last = _positions(bare) if bare else ("-", "-")
    rows = [
        ("messages", str(stack["messages"]), shown(bare.get("messages")), ""),
        (
            "messages/s",
            str(stack["messages_per_s"]),
            shown(bare.get("messages_per_s")),
            shown(ratio.get("messages_per_s")),
        ),
    ]
    for kind in ("faq", "crm", "chat", "all"):
        rows.append(
            (
                f"{kind} p50 / p95 / p99 ms",
                _percentiles(stack, kind),
                _percentiles(bare, kind) if bare else "-",
                shown(ratio.get("faq_p50")) if kind == "faq" else "",
            )
        )
    rows += [
        ("faq mean, first turns", first, bare_first, ""),
        ("faq mean, last turns", last, bare_last, ""),
        (
            "server CPU ms/message",
            str(stack["server_cpu_ms_per_message"]),
            shown(bare.get("server_cpu_ms_per_message")),
            shown(ratio.get("server_cpu_ms_per_message")),
        ),
        (
            "errors / unexpected",
            f"{stack['errors']} / {stack['unexpected_replies']}",
            f"{bare.get('errors', '-')} / {bare.get('unexpected_replies', '-')}",
            "",
        ),
        ("CRM log drain s", str(stack["log_drain_s"]), "", ""),
    ]
    return rows


def print_report(report: dict[str, Any]) -> None:
    """The table: stack against bare Rasa, each process, and the audit."""
    machine = report["machine"]
    print(
        f"Load: {report['shape']} shape, {report['rasa_processes']} Rasa process(es), "
        f"{report['customers']} customers x {report['turns']} turns "
        f"(bare Rasa: {report['bare_turns']} turns each)"
    )
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; "
        f"load average {machine['load_average'][0]} before, "
        f"{machine['load_average_after'][0]} after"
    )
    print(f"\n{'':<26} {'stack':>26} {'bare Rasa':>26} {'ratio':>7}")
    for name, ours, theirs, ratio in _table_rows(report):
        print(f"{name:<26} {ours:>26} {theirs:>26} {ratio:>7}")
    print(f"\n{'process':<26} {'CPU s':>8} {'ms/msg':>8} {'peak RSS MB':>12}")
    for phase in ("stack", "bare_rasa"):
        for name, figures in (report[phase] or {}).get("processes", {}).items():
            print(
                f"{name:<26} {figures['cpu_s']:>8} {figures['cpu_ms_per_message']:>8} "
                f"{figures['peak_rss_mb']:>12}"
            )
    audit = report["audit"]
    parts = ", ".join(
        f"{name} {value['found']}/{value['expected']}"
        for name, value in audit.items()
        if isinstance(value, dict)
    )
    print(f"\nAudit (found/expected): {parts}: {'MATCHES' if audit['matches'] else 'MISMATCH'}")
    for mismatch in audit["mismatches"]:
        print(f"  {mismatch['sender']}: {mismatch['problem']} ({mismatch.get('detail', '')})")
