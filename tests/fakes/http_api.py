"""A recording JSON-over-HTTP API server on 127.0.0.1 for stand-ins of platform APIs."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class RecordingApi:
    """Subclasses answer ``respond(method, params) -> (status, body)`` for paths under
    ``prefix``; every answered call is recorded (``record=False`` bodies excepted)."""

    prefix = "/"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RecordingApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def record(self, method: str, params: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(Call(method, params))

    def calls_to(self, method: str, **matching: Any) -> list[Call]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c.method == method and all(c.params.get(k) == v for k, v in matching.items())
            ]

    def wait_for(self, method: str, count: int, timeout: float = 60, **matching: Any) -> list[Call]:
        """Wait until ``count`` matching calls arrived, then a little more to catch extras."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.calls_to(method, **matching)) < count:
            time.sleep(0.1)
        time.sleep(0.5)
        return self.calls_to(method, **matching)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if not request.path.startswith(self.prefix):
            self._reply(request, 404, {"ok": False, "error": "not_found"})
            return
        method = request.path[len(self.prefix) :].split("?")[0]
        length = int(request.headers.get("Content-Length") or 0)
        params = self._params(request.headers.get("Content-Type", ""), request.rfile.read(length))
        status, body = self.respond(method, params)
        self._reply(request, status, body)

    @staticmethod
    def _params(content_type: str, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        if "json" in content_type:
            loaded: dict[str, Any] = json.loads(body)
            return loaded
        params: dict[str, Any] = {}
        for key, values in parse_qs(body.decode(), keep_blank_values=True).items():
            try:
                params[key] = json.loads(values[0])
            except ValueError:
                params[key] = values[0]
        return params

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
