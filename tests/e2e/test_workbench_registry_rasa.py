"""The model registry against a real Rasa server (HTTP API on, token set) serving tiny
models: a promotion really changes the model that answers, a rollback brings the old one
back, and refusals or failures change nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy.orm import sessionmaker

from bench.servers import free_port
from bot.settings import PROJECT_ROOT
from bot.workbench.evaluation import PromotionDecision
from bot.workbench.promotion import ModelRegistry, ServingPointer, read_pointer
from crm_bridge.db import session_factory
from crm_bridge.errors import Conflict, Unavailable
from crm_bridge.migrate import upgrade
from tests.unit.test_workbench_golden import train_tiny_models

pytestmark = pytest.mark.e2e

TOKEN = "rasa-api-token-for-e2e-tests"
STARTUP_SECONDS = 240
ALLOWED = PromotionDecision(True, ())
REFUSED = PromotionDecision(False, ("greet fell from 1.00 to 0.40.",))
GREETING = "Hi! I'm the Rapport Demo Shop assistant. How can I help you today?"


@dataclass
class RasaApi:
    url: str
    process: subprocess.Popen
    log: Path

    def status_model(self) -> str:
        response = requests.get(f"{self.url}/status", params={"token": TOKEN}, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["model_file"])

    def load(self, model: Path) -> None:
        response = requests.put(
            f"{self.url}/model",
            params={"token": TOKEN},
            json={"model_file": str(model)},
            timeout=120,
        )
        assert response.status_code == 204, response.text

    def reply(self, sender: str, text: str) -> str:
        response = requests.post(
            f"{self.url}/webhooks/rest/webhook",
            json={"sender": sender, "message": text},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return " ".join(message.get("text", "") for message in response.json())


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return train_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models")


@pytest.fixture(scope="module")
def rasa_api(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RasaApi]:
    """``python -m bot rasa-server`` with the API on, serving the good tiny model."""
    work = tmp_path_factory.mktemp("promotion-rasa")
    crm_url = f"sqlite:///{work / 'crm.db'}"
    upgrade(crm_url)  # the server's interaction log writes there
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "RASA_TELEMETRY_ENABLED": "false",
        "CRM_DATABASE_URL": crm_url,
        "TRACKER_DATABASE_URL": f"sqlite:///{work / 'tracker.db'}",
        "RAPPORT_VAR_DIR": str(work),
        "RASA_PORT": str(port),
        "RASA_ENABLE_API": "true",
        "RASA_API_TOKEN": TOKEN,
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}/webhook",
        "LOG_LEVEL": "INFO",
    }
    for key in (
        "REDIS_URL",
        "RABBITMQ_URL",
        "TELEGRAM_TOKEN",
        "SLACK_BOT_TOKEN",
        "RASA_JWT_SECRET",
    ):
        env.pop(key, None)
    log = work / "rasa.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "rasa-server", "--model", str(tiny_models["good"])],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    api = RasaApi(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "Rasa did not start"
            try:
                if requests.get(f"{api.url}/status", params={"token": TOKEN}, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Setup:
    registry: ModelRegistry
    crm: sessionmaker
    models_dir: Path
    a: Path
    b: Path


@pytest.fixture
def setup(rasa_api: RasaApi, tiny_models: dict[str, Path], tmp_path: Path) -> Setup:
    """A models folder with A (good) and B (broken), a fresh CRM, Rasa serving A."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    a, b = models_dir / "rapport-a.tar.gz", models_dir / "rapport-b.tar.gz"
    shutil.copy(tiny_models["good"], a)
    shutil.copy(tiny_models["broken"], b)
    crm_url = f"sqlite:///{tmp_path / 'crm.db'}"
    upgrade(crm_url)
    rasa_api.load(a)
    crm = session_factory(crm_url)
    return Setup(ModelRegistry(models_dir, crm, rasa_api.url, TOKEN), crm, models_dir, a, b)


def test_promote_and_roll_back(setup: Setup, rasa_api: RasaApi) -> None:
    registry = setup.registry
    assert registry.serving() == "rapport-a.tar.gz"  # no pointer yet: Rasa's own answer
    assert rasa_api.reply("promotion-1", "hello") == GREETING

    record = registry.promote(setup.b, "alice", ALLOWED, {"accuracy": 1.0}, {}, "abc123")

    assert (record.model, record.previous_model, record.action) == (
        "rapport-b.tar.gz",
        "rapport-a.tar.gz",
        "promote",
    )
    assert rasa_api.status_model() == "rapport-b.tar.gz"
    assert rasa_api.reply("promotion-2", "hello") == "Bye again."  # B answers now
    assert read_pointer(setup.models_dir) == ServingPointer("rapport-b.tar.gz", "rapport-a.tar.gz")

    back = registry.rollback("bob", "B says goodbye to greetings")

    assert (back.model, back.previous_model, back.action) == (
        "rapport-a.tar.gz",
        "rapport-b.tar.gz",
        "rollback",
    )
    assert rasa_api.status_model() == "rapport-a.tar.gz"
    assert rasa_api.reply("promotion-3", "hello") == GREETING
    assert read_pointer(setup.models_dir) == ServingPointer("rapport-a.tar.gz", "rapport-b.tar.gz")
    assert [h.action for h in registry.history()] == ["rollback", "promote"]


def test_a_refused_promotion_changes_nothing(setup: Setup, rasa_api: RasaApi) -> None:
    with pytest.raises(Conflict):
        setup.registry.promote(setup.b, "alice", REFUSED, {}, {}, None)
    assert rasa_api.status_model() == "rapport-a.tar.gz"
    assert read_pointer(setup.models_dir) is None
    assert setup.registry.history() == []


def test_a_wrong_token_changes_nothing(setup: Setup, rasa_api: RasaApi) -> None:
    wrong = ModelRegistry(setup.models_dir, setup.crm, rasa_api.url, "not-the-token")
    with pytest.raises(Unavailable) as refused:
        wrong.promote(setup.b, "alice", ALLOWED, {}, {}, None)
    assert "token" in str(refused.value)
    assert rasa_api.status_model() == "rapport-a.tar.gz"
    assert read_pointer(setup.models_dir) is None
    assert wrong.history() == []


def test_rasa_down_changes_nothing(setup: Setup, rasa_api: RasaApi) -> None:
    down = ModelRegistry(setup.models_dir, setup.crm, f"http://127.0.0.1:{free_port()}", TOKEN)
    with pytest.raises(Unavailable):
        down.promote(setup.b, "alice", ALLOWED, {}, {}, None)
    assert read_pointer(setup.models_dir) is None
    assert down.history() == []
    assert rasa_api.status_model() == "rapport-a.tar.gz"


def test_the_token_is_not_in_rasas_log(rasa_api: RasaApi, setup: Setup) -> None:
    setup.registry.promote(setup.b, "alice", ALLOWED, {}, {}, None)
    assert TOKEN not in rasa_api.log.read_text(errors="replace")
