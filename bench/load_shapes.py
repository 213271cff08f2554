"""The stacks ``python -m bench.load`` starts on loopback, and bare Rasa.

- ``embedded`` (as ``make run``): one Rasa server and the action server, SQLite CRM and
  tracker store, in-memory lock store, the interaction log written in-process;
- ``production``: ``rasa_processes`` Rasa servers behind HAProxy (round robin; nginx if
  HAProxy is not installed), the action server, a fresh PostgreSQL CRM database, Redis
  tracker and lock stores on an empty Redis database (flushed afterwards), RabbitMQ with
  a fresh queue and exchange (deleted afterwards) and ``python -m crm_bridge.consumer``;
- bare Rasa: ``rasa run`` with the same model from an empty folder (no endpoints).

Nothing is installed here: a missing balancer is named, with the package to install.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.load_metrics import parent_pid
from bench.server import start_bare_rasa, wait_until_ready
from bench.servers import PROJECT_ROOT, BotServers, free_port, start_bot_servers, stop_processes
from crm_bridge.settings import redact_url

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_SERVER = "redis://127.0.0.1:6379"
# The same administrative connection as the integration tests' PostgreSQL databases.
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
# Redis databases the benchmark may take (the tests use 8 and 9); the first empty one.
REDIS_DATABASES = range(10, 16)
BALANCER_TIMEOUT_S = 30
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"  # where Debian installs haproxy and nginx


class StackError(RuntimeError):
    """The stack cannot be started here (a missing binary, an unreachable service)."""


@dataclass
class Stack:
    """A running stack: where customers post, its servers, and its processes to sample."""

    shape: str
    webhook: str
    servers: BotServers
    # name -> pid of each process whose CPU and memory the report shows (re-read at each
    # sample: PostgreSQL backends come and go).
    pids: Callable[[], dict[str, int]] = dict
    details: dict[str, Any] = field(default_factory=dict)


def process_names(processes: list[subprocess.Popen]) -> dict[str, int]:
    """Names for ``start_bot_servers``' processes: the action server, then each Rasa."""
    names = ["actions", *(f"rasa-{n}" for n in range(1, len(processes)))]
    return {name: process.pid for name, process in zip(names, processes, strict=True)}


@contextmanager
def embedded(model: Path, workdir: Path) -> Iterator[Stack]:
    """The embedded shape (``make run``): bench.servers' action and Rasa servers."""
    servers, processes = start_bot_servers(model, workdir)
    pids = process_names(processes)
    try:
        yield Stack("embedded", servers.webhook, servers, lambda: pids)
    finally:
        stop_processes(processes)


BALANCERS = ("haproxy", "nginx")  # in order of preference


def find_balancer(only: str = "") -> tuple[str, str]:
    """``("haproxy" | "nginx", path)``: HAProxy preferred, or ``only`` that one; a
    StackError naming what to install when none is there."""
    search = f"{os.environ.get('PATH', '')}:{SBIN}"
    wanted = (only,) if only else BALANCERS
    for name in wanted:
        path = shutil.which(name, path=search)
        if path:
            return name, path
    raise StackError(
        f"--shape production needs a load balancer: {' or '.join(wanted)} is not installed "
        f"(on Debian: apt-get install -y {wanted[0]})"
    )


def haproxy_config(port: int, backends: list[str]) -> str:
    """Round robin over the Rasa servers; each answer names its server in a header."""
    servers = "\n".join(
        f"    server rasa-{n} {url.removeprefix('http://')}"
        for n, url in enumerate(backends, start=1)
    )
    return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 150s
    timeout server 150s
frontend rapport
    bind 127.0.0.1:{port}
    default_backend rasa
backend rasa
    balance roundrobin
    http-response set-header X-Rapport-Backend %s
{servers}
"""


def nginx_config(port: int, backends: list[str], workdir: Path) -> str:
    """The same balancing with nginx (its default is round robin), all files in workdir."""
    servers = "\n".join(f"    server {url.removeprefix('http://')};" for url in backends)
    temp = " ".join(
        f"{kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"};
events {{ worker_connections 1024; }}
http {{
  access_log off;
  {temp}
  upstream rasa {{
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://rasa;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 150s;
      add_header X-Rapport-Backend $upstream_addr always;
    }}
  }}
}}
"""


def start_balancer(
    backends: list[str], workdir: Path, only: str = ""
) -> tuple[subprocess.Popen, str, str]:
    """The balancer in front of ``backends``: its process, URL and version line."""
    name, path = find_balancer(only)
    port = free_port()
    config = workdir / f"{name}.cfg"
    if name == "haproxy":
        config.write_text(haproxy_config(port, backends))
        command = [path, "-db", "-f", str(config)]
    else:
        config.write_text(nginx_config(port, backends, workdir))
        command = [path, "-e", str(workdir / "nginx-error.log"), "-c", str(config)]
    version = subprocess.run([path, "-v"], capture_output=True, text=True, check=False, timeout=10)
    log = (workdir / f"{name}.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + BALANCER_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/webhooks/rest/", timeout=2).status_code == 200:
                first_line = (version.stdout or version.stderr).strip().splitlines()
                return process, url, first_line[0] if first_line else name
        except requests.RequestException:
            pass
        time.sleep(0.3)
    stop_processes([process])
    raise StackError(f"{name} did not come up: {(workdir / f'{name}.log').read_text()[-2000:]}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on 127.0.0.1 (dropped afterwards): its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    name = f"rapport_load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, future=True, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        where = redact_url(POSTGRES_ADMIN_URL)
        raise StackError(f"PostgreSQL is not reachable at {where}") from error
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_backends(database_url: str) -> dict[str, int]:
    """The PostgreSQL server processes serving this database now, named by pid."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    admin = create_engine(POSTGRES_ADMIN_URL, future=True)
    try:
        with admin.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
            return {f"postgres:{pid}": int(pid) for (pid,) in rows}
    finally:
        admin.dispose()


@contextmanager
def redis_database(number: int | None) -> Iterator[str]:
    """An empty Redis database (the first free one of REDIS_DATABASES unless ``number``);
    flushed afterwards. Its URL."""
    import redis  # type: ignore[import-untyped]

    candidates = [number] if number is not None else list(REDIS_DATABASES)
    for candidate in candidates:
        client = redis.Redis.from_url(f"{REDIS_SERVER}/{candidate}", socket_timeout=5)
        try:
            empty = client.dbsize() == 0
        except redis.RedisError as error:
            raise StackError(f"Redis is not reachable at {REDIS_SERVER}") from error
        if empty:
            break
        client.close()
    else:
        raise StackError(f"no empty Redis database among {candidates}: choose one (--redis-db)")
    try:
        yield f"{REDIS_SERVER}/{candidate}"
    finally:
        client.flushdb()  # only this database: other databases belong to others
        client.close()


async def _at_rabbitmq(queue: str, exchange: str, delete: bool) -> None:
    """Connect to RabbitMQ (StackError if it is not there); with ``delete``, delete the
    queue, its dead-letter queue and the exchange."""
    import aio_pika

    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
    except (OSError, asyncio.TimeoutError, aio_pika.exceptions.AMQPError) as error:
        raise StackError(f"RabbitMQ is not reachable at {redact_url(AMQP_URL)}") from error
    async with connection:
        if not delete:
            return
        channel = await connection.channel()
        for name in (queue, f"{queue}.dead"):
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)


@contextmanager
def rabbitmq_queue() -> Iterator[tuple[str, str]]:
    """A fresh queue and exchange name for the run's events; both (and the dead-letter
    queue) deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    queue, exchange = f"rapport_load_{suffix}", f"rapport_load_exchange_{suffix}"
    asyncio.run(_at_rabbitmq(queue, exchange, delete=False))
    try:
        yield queue, exchange
    finally:
        asyncio.run(_at_rabbitmq(queue, exchange, delete=True))


def _command(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""  # gone meanwhile


def shared_services() -> dict[str, int]:
    """Redis's and RabbitMQ's server processes (shared with other users of this machine)."""
    wanted = {"redis-server": "redis (shared)", "beam.smp": "rabbitmq (shared)"}
    found = {}
    for entry in Path("/proc").iterdir():
        command = _command(entry.name) if entry.name.isdigit() else ""
        # Not a short-lived fork of the server (Redis saves its snapshots in one).
        if command in wanted and _command(parent_pid(int(entry.name))) != command:
            found[wanted[command]] = int(entry.name)
    return found


def start_consumer(servers: BotServers) -> subprocess.Popen:
    """``python -m crm_bridge.consumer`` with the servers' settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "crm_bridge.consumer"],
        cwd=PROJECT_ROOT,
        env=servers.env,
        stdout=(servers.log_dir / "consumer.log").open("w"),
        stderr=subprocess.STDOUT,
    )


@contextmanager
def production(
    model: Path,
    workdir: Path,
    rasa_processes: int,
    redis_db: int | None = None,
    balancer_name: str = "",
) -> Iterator[Stack]:
    """The production shape (see the module's docstring); ``balancer_name`` forces
    haproxy or nginx."""
    find_balancer(balancer_name)  # before minutes of start-up
    with (
        postgres_database() as crm_url,
        redis_database(redis_db) as redis_url,
        rabbitmq_queue() as (queue, exchange),
    ):
        env = {
            "REDIS_URL": redis_url,
            "RABBITMQ_URL": AMQP_URL,
            "RAPPORT_EVENTS_QUEUE": queue,
            "RAPPORT_EVENTS_EXCHANGE": exchange,
        }
        servers, processes = start_bot_servers(model, workdir, env, crm_url, rasa_processes)
        late: list[subprocess.Popen] = []
        try:
            late.append(start_consumer(servers))
            balancer, url, version = start_balancer(servers.rasa_urls, workdir, balancer_name)
            processes.insert(0, balancer)  # stopped first: no new requests
            pids = {**process_names(processes[1:]), "balancer": balancer.pid}
            pids["consumer"] = late[0].pid
            services = shared_services()
            yield Stack(
                "production",
                f"{url}/webhooks/rest/webhook",
                servers,
                lambda: {**pids, **postgres_backends(crm_url), **services},
                {"balancer": version, "redis": redis_url, "queue": queue},
            )
        finally:
            # Rasa flushes its broker on SIGTERM, so the consumer stops after the servers.
            stop_processes(processes)
            stop_processes(late)


@contextmanager
def bare_rasa(model: Path, workdir: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """Bare Rasa with the model: its REST webhook and its process."""
    server, url = start_bare_rasa(model, workdir, rest=True, log=workdir / "bare-rasa.log")
    try:
        wait_until_ready(url, server)
        yield f"{url}/webhooks/rest/webhook", {"rasa (bare)": server.pid}
    finally:
        stop_processes([server])
