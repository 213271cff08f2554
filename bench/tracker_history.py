"""``python -m bench.tracker_history``: what one turn costs the tracker store for a
customer with a long history.

For each store and each number of earlier turns (spread over sessions of 100 turns),
stores that history for a fresh sender, then times ``retrieve`` + one new event +
``save`` (what Rasa does for every message) and prints the median of ``--repeat``
turns in milliseconds; writes JSON to ``bench/results/tracker_history.json``. Stores:
Rasa's ``RedisTrackerStore``, Rapport's ``CurrentSessionRedisTrackerStore`` (both at
``--redis``, database 9, keys deleted afterwards) and Rasa's ``SQLTrackerStore`` on a
temporary SQLite file. Talks only to 127.0.0.1.

Example:
  python -m bench.tracker_history --earlier 0 100 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rasa.core.tracker_store import RedisTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    BotUttered,
    Event,
    SessionStarted,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.stores import CurrentSessionRedisTrackerStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TURNS_PER_SESSION = 100


def session(number: int, turns: int) -> list[Event]:
    """One conversation session of ``turns`` greeting turns, timestamps in order."""
    start = float(number * 100_000)
    events: list[Event] = [
        ActionExecuted("action_session_start", timestamp=start),
        SessionStarted(timestamp=start + 1),
    ]
    for turn in range(turns):
        at = start + 2 + turn * 4
        events += [
            UserUttered(f"message {turn}", {"name": "greet"}, timestamp=at),
            ActionExecuted("utter_greet", timestamp=at + 1),
            BotUttered(f"reply {turn}", timestamp=at + 2),
            ActionExecuted("action_listen", timestamp=at + 3),
        ]
    return events


def history(earlier_turns: int) -> list[Event]:
    """``earlier_turns`` over finished sessions, then a current session of 5 turns."""
    events: list[Event] = []
    number = 0
    while earlier_turns > 0:
        turns = min(TURNS_PER_SESSION, earlier_turns)
        events += session(number, turns)
        earlier_turns -= turns
        number += 1
    return events + session(number, 5)


async def turn_ms(store: TrackerStore, earlier_turns: int, repeat: int) -> float:
    """Median milliseconds of retrieve + one event + save for a sender with that history."""
    sender = f"bench-{uuid.uuid4().hex}"
    await store.save(DialogueStateTracker.from_events(sender, history(earlier_turns)))
    times = []
    for index in range(repeat):
        started = time.perf_counter()
        tracker = await store.retrieve(sender)
        assert tracker is not None
        tracker.update(UserUttered(f"new {index}", {"name": "greet"}, timestamp=1e9 + index))
        await store.save(tracker)
        times.append((time.perf_counter() - started) * 1000)
    if isinstance(store, RedisTrackerStore):
        store.red.delete(store.key_prefix + sender)
    return statistics.median(times)


def stores(redis_host: str, redis_port: int, folder: Path) -> dict[str, TrackerStore]:
    """The stores compared, by name."""
    domain = Domain.empty()
    redis: dict[str, Any] = {"host": redis_host, "port": redis_port, "db": 9}
    return {
        "Rasa RedisTrackerStore": RedisTrackerStore(domain, key_prefix="bench", **redis),
        "Rapport CurrentSessionRedisTrackerStore": CurrentSessionRedisTrackerStore(
            domain, key_prefix="bench", **redis
        ),
        "Rasa SQLTrackerStore (SQLite)": SQLTrackerStore(
            domain, dialect="sqlite", db=str(folder / "tracker.db")
        ),
    }


async def run(earlier: list[int], repeat: int, redis_host: str, redis_port: int) -> dict:
    """The median turn cost per store and history length."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as folder:
        for name, store in stores(redis_host, redis_port, Path(folder)).items():
            results[name] = {
                str(turns): round(await turn_ms(store, turns, repeat), 2) for turns in earlier
            }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracker_history",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--earlier", type=int, nargs="+", default=[0, 100, 1000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.earlier, args.repeat, args.redis_host, args.redis_port))
    print("ms per turn (retrieve + save), by earlier turns: " + ", ".join(map(str, args.earlier)))
    for name, row in results.items():
        print(f"  {name:42} " + "  ".join(f"{row[str(n)]:>9.2f}" for n in args.earlier))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tracker_history.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
