"""Figures of ``python -m bench.load``: latency percentiles by turn kind and by position in
the conversation, and each process's CPU time and peak memory read from /proc."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load_drive import Drive, TurnRecord
from bench.nlu.metrics import percentile

POSITION_BUCKET = 10  # turns 1-10, 11-20, ...
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = 1024


def latency_summary(seconds: list[float]) -> dict[str, float | int]:
    """Count, mean and p50/p95/p99/max in milliseconds."""
    ms = [value * 1000 for value in seconds]
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "mean_ms": round(sum(ms) / len(ms), 1),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def by_kind(records: list[TurnRecord]) -> dict[str, dict[str, float | int]]:
    """Latency of the answered turns of each kind, and of all of them."""
    answered = [record for record in records if record.ok]
    kinds = sorted({record.kind for record in answered})
    summaries = {
        kind: latency_summary([r.seconds for r in answered if r.kind == kind]) for kind in kinds
    }
    summaries["all"] = latency_summary([record.seconds for record in answered])
    return summaries


def by_position(records: Iterable[TurnRecord], kind: str = "") -> list[dict[str, Any]]:
    """Mean latency of turns 1-10, 11-20, ... (only ``kind`` turns if given): does a turn
    cost more the longer the conversation already is?"""
    buckets: dict[int, list[float]] = {}
    for record in records:
        if record.ok and (not kind or record.kind == kind):
            buckets.setdefault((record.position - 1) // POSITION_BUCKET, []).append(record.seconds)
    return [
        {
            "turns": f"{bucket * POSITION_BUCKET + 1}-{(bucket + 1) * POSITION_BUCKET}",
            "count": len(seconds),
            "mean_ms": round(1000 * sum(seconds) / len(seconds), 1),
        }
        for bucket, seconds in sorted(buckets.items())
    ]


def drive_figures(run: Drive) -> dict[str, Any]:
    """Throughput, errors and latencies of one drive."""
    records = run.records
    answered = sum(record.ok for record in records)
    backends: dict[str, int] = {}
    for record in records:
        if record.backend:
            backends[record.backend] = backends.get(record.backend, 0) + 1
    return {
        "customers": len(run.conversations),
        "messages": len(records),
        "answered": answered,
        "errors": len(records) - answered,
        "error_kinds": sorted({record.error for record in records if record.error}),
        "unexpected_replies": sum(record.ok and not record.expected for record in records),
        "seconds": round(run.seconds, 2),
        "messages_per_s": round(answered / run.seconds, 2) if run.seconds else 0.0,
        "latency": by_kind(records),
        "by_position": by_position(records),
        "faq_by_position": by_position(records, "faq"),
        **({"answered_by": dict(sorted(backends.items()))} if backends else {}),
    }


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds so far (the process, its live descendants and its reaped children) and
    memory (the sum over the process and its live descendants)."""

    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def _kb(path: Path, name: str) -> int:
    """A ``Name:  123 kB`` line of /proc/<pid>/status or /proc/meminfo."""
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    return 0


def parent_pid(pid: int) -> int:
    """The parent's pid; 0 if the process is gone."""
    try:
        return int(_stat_fields(pid)[1])
    except (OSError, ValueError, IndexError):
        return 0


def descendants(pid: int) -> list[int]:
    """The live processes started by ``pid``, directly or not."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_pid(int(entry.name))
            if parent:  # 0: it exited meanwhile
                children.setdefault(parent, []).append(int(entry.name))
    found, waiting = [], list(children.get(pid, []))
    while waiting:
        child = waiting.pop()
        found.append(child)
        waiting.extend(children.get(child, []))
    return found


def sample(pid: int) -> ProcessSample | None:
    """The process tree's CPU and memory now; None if the process is gone."""
    cpu_ticks, rss_kb, peak_kb = 0, 0, 0
    for number, member in enumerate([pid, *descendants(pid)]):
        try:
            fields = _stat_fields(member)
            # utime, stime (fields 14, 15); cutime, cstime (16, 17) of the reaped children.
            # A live descendant's own reaped children are counted by its cutime too.
            cpu_ticks += sum(int(value) for value in fields[11:15])
            status = Path(f"/proc/{member}/status")
            rss_kb += _kb(status, "VmRSS")
            peak_kb += _kb(status, "VmHWM")
        except (OSError, ValueError, IndexError):
            if number == 0:
                return None
    return ProcessSample(cpu_ticks / CLOCK_TICKS, rss_kb / PAGE_KB, peak_kb / PAGE_KB)


def sample_all(pids: Mapping[str, int]) -> dict[str, ProcessSample]:
    """``sample`` of each named process that is still there."""
    samples = {name: sample(pid) for name, pid in pids.items()}
    return {name: found for name, found in samples.items() if found is not None}


def process_figures(
    before: Mapping[str, ProcessSample], after: Mapping[str, ProcessSample], messages: int
) -> dict[str, dict[str, float]]:
    """Each process's CPU seconds between the two samples (and per message) and its
    memory at the end; the peak is VmHWM, summed over the process tree. Processes named
    ``group:pid`` (PostgreSQL's backends) are summed into one ``group`` row, each counted
    from its own first sample (a backend that ended before the last sample is missed)."""
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    peak: dict[str, float] = {}
    for name, end in after.items():
        group = name.partition(":")[0]
        start = before.get(name, ProcessSample(0.0, 0.0, 0.0))
        cpu[group] = cpu.get(group, 0.0) + end.cpu_s - start.cpu_s
        rss[group] = rss.get(group, 0.0) + end.rss_mb
        peak[group] = peak.get(group, 0.0) + end.peak_rss_mb
    return {
        group: {
            "cpu_s": round(cpu[group], 2),
            "cpu_ms_per_message": round(1000 * cpu[group] / messages, 1) if messages else 0.0,
            "rss_mb": round(rss[group], 1),
            "peak_rss_mb": round(peak[group], 1),
        }
        for group in cpu
    }


def own_cpu_s() -> float:
    """This process's CPU seconds so far (the simulated customers' side)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict[str, Any]:
    """The CPU model, cores and memory, and the load average (other work running)."""
    model = next(
        (
            line.partition(":")[2].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    memory_kb = _kb(Path("/proc/meminfo"), "MemTotal")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
