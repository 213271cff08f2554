"""Scans every store for a person's identifiers: every column of every table of an SQL
database, every Redis key and value, every message waiting in a RabbitMQ queue.

Used by the erasure and retention tests (and meant for the e2e suite): a finding names
where a needle is (table, column and row; Redis key; queue position) and which needle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from crm_bridge.db import get_engine


def _hits(text: str, needles: Iterable[str]) -> list[str]:
    low = text.lower()
    return [needle for needle in needles if needle and needle.lower() in low]


def scan_sql(url: str, needles: Iterable[str]) -> list[str]:
    """``table.column#row: needle`` for every cell (any type, as text) holding a needle."""
    needles = list(needles)
    engine = get_engine(url)
    findings: list[str] = []
    metadata = sa.MetaData()
    metadata.reflect(bind=engine)
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(sa.select(table)).mappings():
                for name, value in row.items():
                    if value is None:
                        continue
                    for needle in _hits(str(value), needles):
                        findings.append(f"{table.name}.{name}#{row.get('id')}: {needle}")
    return findings


def _redis_values(client: Any, key: bytes) -> list[bytes]:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key) or b""]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return list(client.zrange(key, 0, -1))
    return []


def scan_redis(client: Any, needles: Iterable[str]) -> list[str]:
    """``key: needle`` for every key of the client's database whose name or value holds
    a needle (strings, lists, hashes, sets and sorted sets)."""
    needles = list(needles)
    findings: list[str] = []
    for key in client.scan_iter(count=1000):
        texts = [key, *_redis_values(client, key)]
        for text in texts:
            for needle in _hits(text.decode("utf-8", "replace"), needles):
                findings.append(f"{key.decode('utf-8', 'replace')}: {needle}")
    return findings


async def queue_bodies(amqp_url: str, queue: str) -> list[bytes]:
    """The bodies waiting in ``queue``, in order, left in place (requeued unchanged)."""
    import aio_pika

    bodies: list[bytes] = []
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        held = []
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            bodies.append(message.body)
            held.append(message)
        for message in held:
            await message.nack(requeue=True)
    return bodies


async def scan_queue(amqp_url: str, queue: str, needles: Iterable[str]) -> list[str]:
    """``queue#position: needle`` for every waiting message whose body holds a needle."""
    needles = list(needles)
    findings: list[str] = []
    for position, body in enumerate(await queue_bodies(amqp_url, queue)):
        for needle in _hits(body.decode("utf-8", "replace"), needles):
            findings.append(f"{queue}#{position}: {needle}")
    return findings
