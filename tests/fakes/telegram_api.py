"""A stand-in for the Telegram Bot API on 127.0.0.1: records every call, answers like
Telegram does, and can answer the next sendMessage with a 429 "retry after"."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Rapport", "username": "rapport_demo_bot"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeTelegramApi:
    """Run with ``start()``; ``base_url`` goes to python-telegram-bot's ``base_url``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.rate_limit_next_sends = 0
        self.retry_after_seconds = 1
        self._lock = threading.Lock()
        self._message_id = 1000
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
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    def start(self) -> FakeTelegramApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls_to(self, method: str, chat_id: int | None = None) -> list[Call]:
        with self._lock:
            return [
                c for c in self.calls
                if c.method == method and (chat_id is None or c.params.get("chat_id") == chat_id)
            ]  # fmt: skip

    def wait_for(
        self, method: str, chat_id: int | None, count: int, timeout: float = 60
    ) -> list[Call]:
        """Wait until at least ``count`` calls arrived, then a little more to catch extras."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.calls_to(method, chat_id)) < count:
            time.sleep(0.1)
        time.sleep(0.5)
        return self.calls_to(method, chat_id)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        prefix = f"/bot{self.token}/"
        if not request.path.startswith(prefix):
            self._reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        method = request.path[len(prefix) :]
        length = int(request.headers.get("Content-Length") or 0)
        params = self._params(request.headers.get("Content-Type", ""), request.rfile.read(length))
        if method == "sendMessage":
            with self._lock:
                limited = self.rate_limit_next_sends > 0
                if limited:
                    self.rate_limit_next_sends -= 1
            if limited:
                self._record(method + "#429", params)
                self._reply(request, 429, {
                    "ok": False, "error_code": 429,
                    "description": f"Too Many Requests: retry after {self.retry_after_seconds}",
                    "parameters": {"retry_after": self.retry_after_seconds},
                })  # fmt: skip
                return
        self._record(method, params)
        self._reply(request, 200, {"ok": True, "result": self._result(method, params)})

    def _record(self, method: str, params: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(Call(method, params))

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "sendMessage":
            with self._lock:
                self._message_id += 1
                message_id = self._message_id
            return {
                "message_id": message_id, "date": int(time.time()),
                "chat": {"id": params.get("chat_id"), "type": "private"},
                "from": BOT_USER, "text": params.get("text", ""),
            }  # fmt: skip
        if method == "getUpdates":
            return []
        return True

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
