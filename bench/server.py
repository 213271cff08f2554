"""``python -m bench.server``: a Rasa server's memory and parse latency with a model.

Starts ``rasa run --enable-api`` on 127.0.0.1 with the model (by default the assistant's
own, trained first if its inputs changed), warms it up, sends ``--parses`` single-message
``/model/parse`` requests over HTTP (texts from a BANKING77 CSV), then prints and writes
as JSON: p50/p99 latency and the server's resident memory now and at its peak (VmRSS and
VmHWM from /proc). The README's "Rasa server <= 2 GB RSS" figure comes from here.

Example:
  python -m bench.server --texts ../shared/datasets/banking77/train.csv --parses 200
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.nlu.datasets import load_banking77
from bench.nlu.metrics import percentile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 10
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, help="model archive (default: the bot's own)")
    parser.add_argument("--texts", type=Path, required=True, help="a BANKING77-format CSV")
    parser.add_argument("--parses", type=int, default=200)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    texts = load_banking77(args.texts).texts[: args.parses + WARM_UP]
    model = args.model or bot_model()
    workdir = tempfile.TemporaryDirectory(prefix="bench-server-")
    server, url = start_bare_rasa(model, Path(workdir.name))
    try:
        wait_until_ready(url, server)
        latencies = []
        for index, text in enumerate(texts):
            started = time.perf_counter()
            post_json(f"{url}/model/parse", {"text": text})
            if index >= WARM_UP:
                latencies.append((time.perf_counter() - started) * 1000)
        memory = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
        workdir.cleanup()
    report = {
        "model": str(model),
        "model_mb": Path(model).stat().st_size / 1e6,
        "parses": len(latencies),
        "parse_ms_p50": percentile(latencies, 50),
        "parse_ms_p99": percentile(latencies, 99),
        **memory,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server.json").write_text(json.dumps(report, indent=2))
    for key, value in report.items():
        print(f"{key:>14}: {value:.1f}" if isinstance(value, float) else f"{key:>14}: {value}")
    return 0


def bot_model() -> Path:
    """The assistant's current model, trained first if its inputs changed."""
    from bot.train import train_if_needed

    return train_if_needed()


def start_bare_rasa(
    model: Path, workdir: Path, rest: bool = False, log: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """``rasa run --enable-api`` with the model alone on a free loopback port; the process
    and its URL. It runs from ``workdir``, an empty folder, so the project's endpoints
    (action server, stores, brokers) and channel credentials are not read: an in-memory
    tracker store and no event broker. With ``rest`` Rasa's own REST channel is on (a
    ``credentials.yml`` with only ``rest:``; with no credentials at all Rasa would start
    its interactive command line). Its output goes to ``log`` if given."""
    port = free_port()
    command = [sys.executable, "-m", "rasa", "run", "--enable-api", "-m", str(model)]
    if rest:
        (workdir / "credentials.yml").write_text("rest:\n")
        command += ["--credentials", "credentials.yml"]
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "PYTHONPATH": str(PROJECT_ROOT)}
    output = log.open("w") if log else subprocess.DEVNULL
    server = subprocess.Popen(
        [*command, "-i", "127.0.0.1", "-p", str(port)],
        cwd=workdir,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"rasa run exited with {server.returncode}")
        try:
            status = requests.get(f"{url}/status", timeout=5)
            if status.ok and status.json().get("model_file"):
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"the Rasa server was not ready within {START_TIMEOUT_S} s")


def post_json(url: str, body: dict) -> dict:
    response = requests.post(url, json=body, timeout=REQUEST_TIMEOUT_S)
    response.raise_for_status()
    result: dict = response.json()
    return result


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of the server process now (VmRSS) and at its peak (VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


if __name__ == "__main__":
    sys.exit(main())
