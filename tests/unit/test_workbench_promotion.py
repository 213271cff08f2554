"""The model registry without a real Rasa: the serving pointer, the promotion rule's
refusals, a stand-in Rasa HTTP API (token, status codes, slowness), Rasa down, the
history, the data commit, pruning and what ``python -m bot serve`` picks."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from bench.servers import free_port
from bot.serve import promoted_model
from bot.train import prune_old_models
from bot.workbench.evaluation import PromotionDecision
from bot.workbench.promotion import (
    ModelRegistry,
    ServingPointer,
    data_commit,
    pinned_models,
    read_pointer,
    write_pointer,
)
from crm_bridge import models
from crm_bridge.db import session_factory, unit_of_work
from crm_bridge.errors import Conflict, InvalidInput, NotFound, Unavailable

TOKEN = "rasa-api-token-for-unit-tests"
ALLOWED = PromotionDecision(True, ("Every intent holds its F1.",))
REFUSED = PromotionDecision(
    False, ("greet fell from 0.95 to 0.60.", "1 golden conversation failed.")
)
SCORES = {"accuracy": 0.9, "intents": {"greet": {"f1": 0.95}}}
GOLDEN = {"checked": True, "failures": []}


class FakeRasa:
    """Rasa's ``PUT /model`` and ``GET /status`` with token auth, on a loopback port."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.model_file = "rapport-a.tar.gz"
        self.loads: list[str] = []
        self.put_status = 204
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _authorised(self) -> bool:
                query = parse_qs(urlsplit(self.path).query)
                if query.get("token") == [fake.token]:
                    return True
                self._reply(401, {"message": "User is not authenticated."})
                return False

            def _reply(self, status: int, body: object | None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if urlsplit(self.path).path != "/status":
                    return self._reply(404, None)
                if self._authorised():
                    self._reply(200, {"model_file": fake.model_file, "model_id": "x"})

            def do_PUT(self) -> None:
                if urlsplit(self.path).path != "/model":
                    return self._reply(404, None)
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(fake.delay)
                if fake.put_status != 204:
                    return self._reply(fake.put_status, {"message": "LoadingError"})
                fake.loads.append(body["model_file"])
                fake.model_file = Path(body["model_file"]).name
                self._reply(204, None)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rasa() -> Iterator[FakeRasa]:
    fake = FakeRasa()
    yield fake
    fake.stop()


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("rapport-a", "rapport-b", "rapport-c"):
        (folder / f"{name}.tar.gz").write_bytes(b"model")
    return folder


def registry_for(
    models_dir: Path, crm_url: str, url: str, token: str = TOKEN, **kw
) -> ModelRegistry:
    return ModelRegistry(models_dir, session_factory(crm_url), url, token, **kw)


def promotions(crm_url: str) -> int:
    with unit_of_work(session_factory(crm_url)) as session:
        return int(session.execute(select(func.count(models.ModelPromotion.id))).scalar_one())


def test_promote_then_rollback_twice(models_dir: Path, crm_url: str, rasa: FakeRasa) -> None:
    registry = registry_for(models_dir, crm_url, rasa.url)
    assert registry.serving() == "rapport-a.tar.gz"  # no pointer yet: Rasa says

    record = registry.promote(
        models_dir / "rapport-b.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, "abc123"
    )

    assert rasa.loads == [str((models_dir / "rapport-b.tar.gz").resolve())]
    assert (record.model, record.previous_model, record.action) == (
        "rapport-b.tar.gz",
        "rapport-a.tar.gz",
        "promote",
    )
    assert (record.actor, record.reason, record.data_commit) == ("alice", "", "abc123")
    assert record.scores == {
        **SCORES,
        "decision": {"allowed": True, "reasons": list(ALLOWED.reasons)},
    }
    assert record.golden == GOLDEN
    assert read_pointer(models_dir) == ServingPointer("rapport-b.tar.gz", "rapport-a.tar.gz")
    assert registry.serving() == "rapport-b.tar.gz"

    back = registry.rollback("bob", "  customers complained  ")
    assert (back.model, back.previous_model, back.action, back.reason) == (
        "rapport-a.tar.gz",
        "rapport-b.tar.gz",
        "rollback",
        "customers complained",
    )
    assert rasa.model_file == "rapport-a.tar.gz"
    assert read_pointer(models_dir) == ServingPointer("rapport-a.tar.gz", "rapport-b.tar.gz")
    # A second rollback undoes the first.
    assert registry.rollback("bob").model == "rapport-b.tar.gz"

    history = registry.history()
    assert [h.action for h in history] == ["rollback", "rollback", "promote"]
    assert history[-1] == record
    assert [h.model for h in registry.history(limit=1)] == ["rapport-b.tar.gz"]
    assert history[0].as_dict()["created_at"].startswith(str(history[0].created_at.year))


def test_a_refused_candidate_needs_a_written_override(
    models_dir: Path, crm_url: str, rasa: FakeRasa
) -> None:
    registry = registry_for(models_dir, crm_url, rasa.url)
    candidate = models_dir / "rapport-b.tar.gz"

    with pytest.raises(Conflict) as refused:
        registry.promote(candidate, "alice", REFUSED, SCORES, GOLDEN, None)
    assert "greet fell from 0.95 to 0.60." in str(refused.value)
    assert "1 golden conversation failed." in str(refused.value)
    with pytest.raises(InvalidInput) as blank:
        registry.promote(candidate, "alice", REFUSED, SCORES, GOLDEN, None, override_reason="   ")
    assert blank.value.field == "override_reason"
    assert (rasa.loads, read_pointer(models_dir), promotions(crm_url)) == ([], None, 0)

    record = registry.promote(
        candidate, "alice", REFUSED, SCORES, GOLDEN, None, override_reason=" greet data fixed "
    )
    assert (record.action, record.reason) == ("override", "greet data fixed")
    assert record.scores is not None
    assert record.scores["decision"] == {"allowed": False, "reasons": list(REFUSED.reasons)}


def test_what_cannot_be_promoted(
    models_dir: Path, crm_url: str, rasa: FakeRasa, tmp_path: Path
) -> None:
    registry = registry_for(models_dir, crm_url, rasa.url)
    elsewhere = tmp_path / "rapport-x.tar.gz"
    elsewhere.write_bytes(b"model")

    with pytest.raises(InvalidInput):
        registry.promote(elsewhere, "alice", ALLOWED, SCORES, GOLDEN, None)
    with pytest.raises(NotFound):
        registry.promote(models_dir / "rapport-z.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, None)
    with pytest.raises(InvalidInput):
        registry.promote(models_dir / "rapport-b.tar.gz", " ", ALLOWED, SCORES, GOLDEN, None)
    with pytest.raises(Conflict):  # Rasa serves it already
        registry.promote(models_dir / "rapport-a.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, None)
    with pytest.raises(InvalidInput) as nothing:
        registry.rollback("alice")
    assert nothing.value.message == "There is nothing to roll back to."
    assert (rasa.loads, read_pointer(models_dir), promotions(crm_url)) == ([], None, 0)


@pytest.mark.parametrize(
    ("status", "token", "words"),
    [(500, TOKEN, "could not load"), (204, "wrong-token", "token"), (404, TOKEN, "API is off")],
    ids=["load-error", "wrong-token", "api-off"],
)
def test_rasa_refusals_change_nothing(
    models_dir: Path, crm_url: str, rasa: FakeRasa, status: int, token: str, words: str
) -> None:
    write_pointer(models_dir, ServingPointer("rapport-a.tar.gz", "rapport-c.tar.gz"))
    rasa.put_status = status
    url = rasa.url + ("/nowhere" if status == 404 else "")
    registry = registry_for(models_dir, crm_url, url, token=token)

    with pytest.raises(Unavailable) as failed:
        registry.promote(models_dir / "rapport-b.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, None)

    assert words in str(failed.value)
    assert read_pointer(models_dir) == ServingPointer("rapport-a.tar.gz", "rapport-c.tar.gz")
    assert (rasa.model_file, promotions(crm_url)) == ("rapport-a.tar.gz", 0)


def test_rasa_down_changes_nothing_and_leaks_no_token(
    models_dir: Path, crm_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = registry_for(models_dir, crm_url, f"http://127.0.0.1:{free_port()}")
    assert registry.serving() is None
    assert TOKEN not in repr(registry)

    with pytest.raises(Unavailable) as down:
        registry.promote(models_dir / "rapport-b.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, None)
    assert "unreachable" in str(down.value)
    write_pointer(models_dir, ServingPointer("rapport-a.tar.gz", "rapport-c.tar.gz"))
    with pytest.raises(Unavailable) as again:
        registry.rollback("alice")
    assert read_pointer(models_dir) == ServingPointer("rapport-a.tar.gz", "rapport-c.tar.gz")
    assert promotions(crm_url) == 0
    for error in (down.value, again.value):
        assert TOKEN not in str(error) and error.__cause__ is None and error.__suppress_context__
    assert TOKEN not in caplog.text


def test_a_slow_rasa_times_out(models_dir: Path, crm_url: str, rasa: FakeRasa) -> None:
    rasa.delay = 1.0
    registry = registry_for(models_dir, crm_url, rasa.url, timeout=0.2)
    with pytest.raises(Unavailable) as slow:
        registry.promote(models_dir / "rapport-b.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, None)
    assert "did not finish loading rapport-b.tar.gz" in str(slow.value)
    assert (read_pointer(models_dir), promotions(crm_url)) == (None, 0)


def test_an_unrecorded_promotion_is_undone(
    models_dir: Path, tmp_path: Path, rasa: FakeRasa
) -> None:
    # A CRM without the promotions table: recording fails after Rasa switched.
    registry = registry_for(models_dir, f"sqlite:///{tmp_path / 'empty.db'}", rasa.url)
    with pytest.raises(Unavailable):
        registry.promote(models_dir / "rapport-b.tar.gz", "alice", ALLOWED, SCORES, GOLDEN, None)
    assert rasa.model_file == "rapport-a.tar.gz"  # loaded back
    assert read_pointer(models_dir) is None


def test_the_pointer_file(models_dir: Path) -> None:
    assert read_pointer(models_dir) is None
    write_pointer(models_dir, ServingPointer("rapport-b.tar.gz", None))
    assert json.loads((models_dir / "serving.json").read_text()) == {
        "current": "rapport-b.tar.gz",
        "previous": None,
    }
    assert pinned_models(models_dir) == {"rapport-b.tar.gz"}
    for bad in ("{", "[]", '{"current": "../../etc/passwd"}', '{"current": ""}'):
        (models_dir / "serving.json").write_text(bad)
        assert read_pointer(models_dir) is None
    (models_dir / "serving.json").write_text('{"current": "rapport-a.tar.gz", "previous": "../x"}')
    assert read_pointer(models_dir) == ServingPointer("rapport-a.tar.gz", None)
    write_pointer(models_dir, None)
    assert not (models_dir / "serving.json").exists()


def test_prune_never_deletes_the_serving_or_previous_model(tmp_path: Path) -> None:
    paths = []
    for index in range(6):
        path = tmp_path / f"rapport-{index:016d}.tar.gz"
        path.write_text("model")
        os.utime(path, (1_000_000 + index, 1_000_000 + index))
        paths.append(path)
    write_pointer(tmp_path, ServingPointer(paths[0].name, paths[1].name))

    prune_old_models(tmp_path, keep=paths[-1])

    kept = sorted(p.name for p in tmp_path.glob("*.tar.gz"))
    assert kept == sorted(p.name for p in [paths[0], paths[1], *paths[3:]])


def test_serve_picks_the_promoted_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert promoted_model(tmp_path) is None
    write_pointer(tmp_path, ServingPointer("rapport-b.tar.gz", "rapport-a.tar.gz"))
    assert promoted_model(tmp_path) is None  # named but gone: today's behaviour
    assert "missing" in capsys.readouterr().err
    (tmp_path / "rapport-b.tar.gz").write_bytes(b"model")
    assert promoted_model(tmp_path) == tmp_path / "rapport-b.tar.gz"
    assert "rapport-b.tar.gz" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_data_commit(tmp_path: Path) -> None:
    assert data_commit(tmp_path) is None  # not a repository

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "nlu.yml").write_text("nlu: []\n")
    (tmp_path / "domain.yml").write_text("intents: []\n")
    git("add", ".")
    git("commit", "-q", "-m", "data")
    head = git("rev-parse", "HEAD")
    assert data_commit(tmp_path) == head

    (tmp_path / "notes.txt").write_text("not training data")
    assert data_commit(tmp_path) == head
    (tmp_path / "data" / "more.yml").write_text("nlu: []\n")
    assert data_commit(tmp_path) == f"{head}+dirty"
    (tmp_path / "data" / "more.yml").unlink()
    (tmp_path / "domain.yml").write_text("intents: [greet]\n")
    assert data_commit(tmp_path) == f"{head}+dirty"
    assert ModelRegistry.data_commit(tmp_path) == f"{head}+dirty"
