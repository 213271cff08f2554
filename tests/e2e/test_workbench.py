"""The trainer workbench in a real headless Chromium, against a real Rasa server.

One trainer's session, in order (the tests of this module share the project, the CRM,
the Rasa server and the browser, and run top to bottom): log in; add an example and see
exactly that line in the YAML file; a second trainer's stale save is refused without
losing their text; label an inbox group; save a conversation as a golden test; train and
evaluate, promote and see the Rasa server's model change; a deliberately broken model
fails the golden conversation and is refused; roll back; the insights charts render and
their CSV equals the CRM. Screenshots of every page go to ``results/workbench/``.

The project is a copy of the real data with a small config (logistic regression instead
of the fine-tuned MiniLM) so that each training run takes about a minute.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select

from bench.servers import free_port, stop_processes
from bench.workbench import WorkbenchServer, start_workbench
from bench.workbench_seed import seed_history
from bot.settings import PROJECT_ROOT
from bot.train import train_if_needed
from crm_bridge import models, users
from crm_bridge.db import session_factory, unit_of_work
from tests.conftest import prepare_crm
from tests.e2e.test_web_chat import CHROMIUM, CHROMIUM_ARGS
from tests.unit.test_workbench_pipeline import TINY_CONFIG

pytestmark = pytest.mark.e2e

TOKEN = "rasa-api-token-for-the-workbench-e2e"
TRAINER, PASSWORD = "tess", "a long trainer password"
SCREENSHOTS = PROJECT_ROOT / "results" / "workbench"
TRAINING_TIMEOUT_MS = 900_000
# The pipeline test's small config, with the fallback the inbox's threshold comes from.
SMALL_CONFIG = TINY_CONFIG.replace(
    "policies:", "  - name: FallbackClassifier\n    threshold: 0.3\npolicies:"
)


@dataclass
class Stack:
    project: Path
    models_dir: Path
    crm_url: str
    rasa_url: str
    workbench: WorkbenchServer
    first_model: Path

    def rasa_model(self) -> str:
        answer = requests.get(f"{self.rasa_url}/status", params={"token": TOKEN}, timeout=10)
        answer.raise_for_status()
        return Path(answer.json()["model_file"]).name


def _wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException:
            pass  # not listening yet, or still loading the model
        time.sleep(0.5)
    raise RuntimeError(f"did not start: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("workbench")
    project = work / "project"
    project.mkdir()
    shutil.copytree(PROJECT_ROOT / "data", project / "data")
    shutil.copy(PROJECT_ROOT / "domain.yml", project / "domain.yml")
    # Validation reads the actions to see which responses they send.
    shutil.copytree(PROJECT_ROOT / "actions", project / "actions")
    (project / "config.yml").write_text(SMALL_CONFIG)
    models_dir = work / "models"
    first_model = train_if_needed(models_dir, root=project)

    crm_url = prepare_crm(f"sqlite:///{work / 'crm.db'}")
    factory = session_factory(crm_url)
    seed_history(factory, conversations=60, lines_per_conversation=10, days=10)
    users.add_user(factory, TRAINER, "trainer", PASSWORD)

    env = {
        "PYTHONPATH": str(PROJECT_ROOT),
        "RASA_TELEMETRY_ENABLED": "false",
        "CRM_DATABASE_URL": crm_url,
        "TRACKER_DATABASE_URL": f"sqlite:///{work / 'tracker.db'}",
        "RAPPORT_VAR_DIR": str(work / "var"),
        "RAPPORT_MODELS_DIR": str(models_dir),
        "RASA_API_TOKEN": TOKEN,
    }
    rasa_port = free_port()
    rasa_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "RABBITMQ"))},
        **env,
        "RASA_PORT": str(rasa_port),
        "RASA_ENABLE_API": "true",
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}/webhook",
    }
    rasa_log = work / "rasa.log"
    with rasa_log.open("w") as out:
        rasa = subprocess.Popen(
            [sys.executable, "-m", "bot", "rasa-server", "--model", str(first_model)],
            cwd=PROJECT_ROOT,
            env=rasa_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    rasa_url = f"http://127.0.0.1:{rasa_port}"
    workbench = None
    try:
        _wait_for(f"{rasa_url}/webhooks/rest/", rasa, rasa_log, 300)
        workbench = start_workbench(
            {**env, "WORKBENCH_PROJECT_DIR": str(project), "WORKBENCH_RASA_URL": rasa_url}, work
        )
        yield Stack(project, models_dir, crm_url, rasa_url, workbench, first_model)
    finally:
        if workbench is not None:
            workbench.stop()
        stop_processes([rasa])
    log = workbench.log.read_text() if workbench else ""
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator[Page]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        # Confirmation dialogs (delete, roll back) are answered yes, like a trainer would.
        page.on("dialog", lambda dialog: dialog.accept())
        outside: list[str] = []
        page.on(
            "request",
            lambda request: None
            if request.url.startswith((stack.workbench.url, "data:"))
            else outside.append(request.url),
        )
        yield page
        context.close()
        browser.close()
    assert outside == [], f"the workbench made outside requests: {outside}"


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_trainer_logs_in(stack: Stack, page: Page) -> None:
    url = stack.workbench.url
    page.goto(f"{url}/intents")
    expect(page).to_have_url(re.compile(r"/login\?next=/intents$"))
    answer = requests.get(f"{url}/login", timeout=10)
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert "http://" not in answer.text and "https://" not in answer.text
    assert requests.post(f"{url}/intents", data={"name": "x"}, timeout=10).status_code == 401

    page.get_by_label("Name").fill(TRAINER)
    page.get_by_label("Password").fill("not the password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    shot(page, "login")
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Intents")).to_be_visible()
    shot(page, "intents")


def test_an_added_example_is_one_new_line_in_the_yaml(stack: Stack, page: Page) -> None:
    orders = stack.project / "data" / "nlu" / "orders.yml"
    before = orders.read_text()
    page.goto(f"{stack.workbench.url}/intents/order_status")
    page.get_by_label("Example", exact=True).fill(
        "where has my [10002](order_number) parcel got to"
    )
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Example added")
    shot(page, "intent")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), orders.read_text().splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == ["+      - where has my [10002](order_number) parcel got to"]


def test_a_second_trainers_stale_save_is_refused_and_keeps_their_text(
    stack: Stack, page: Page
) -> None:
    other = page.context.new_page()
    other.goto(f"{stack.workbench.url}/intents/delivery_problem")
    page.goto(f"{stack.workbench.url}/intents/delivery_problem")
    page.get_by_label("Example", exact=True).fill("the courier left my box in the rain")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Example added")

    other.get_by_label("Example", exact=True).fill("the driver never knocked")
    other.get_by_role("button", name="Add", exact=True).click()
    expect(other.get_by_role("alert")).to_contain_text("Someone else changed")
    expect(other.get_by_label("Example", exact=True)).to_have_value("the driver never knocked")
    other.close()
    text = (stack.project / "data" / "nlu" / "orders.yml").read_text()
    assert "the courier left my box in the rain" in text
    assert "the driver never knocked" not in text


def test_an_inbox_group_becomes_training_examples(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.workbench.url}/inbox")
    group = page.locator("form.group").filter(has_text="gift card").first
    expect(group).to_be_visible()
    shot(page, "inbox")
    ticked = group.locator("input[name=message_id]:checked").count()
    assert ticked >= 2
    group.get_by_label("Intent").select_option("faq/gift_cards")
    group.get_by_role("button", name="Label as this intent").click()
    expect(page.get_by_role("status")).to_contain_text("to faq/gift_cards")
    with unit_of_work(session_factory(stack.crm_url)) as session:
        reviews = session.execute(select(models.InboxReview)).scalars().all()
        assert len(reviews) >= ticked
        assert {review.intent for review in reviews} == {"faq/gift_cards"}
    faq = (stack.project / "data" / "nlu" / "faq.yml").read_text()
    assert "do you take gift cards" in faq or "can I pay with a gift card" in faq


def test_a_conversation_becomes_a_golden_test(stack: Stack, page: Page) -> None:
    answer = requests.post(
        f"{stack.rasa_url}/webhooks/rest/webhook",
        json={"sender": "golden-customer", "message": "hello"},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.json(), answer.text
    interaction_id = None
    deadline = time.monotonic() + 30
    while interaction_id is None and time.monotonic() < deadline:
        # The event broker writes the interaction log just after the reply.
        with unit_of_work(session_factory(stack.crm_url)) as session:
            interaction_id = session.execute(
                select(models.Interaction.id).where(
                    models.Interaction.sender_id == "golden-customer"
                )
            ).scalar_one_or_none()
        time.sleep(0.2)
    assert interaction_id is not None
    page.goto(f"{stack.workbench.url}/conversations")
    page.get_by_role("link", name=str(interaction_id), exact=True).click()
    expect(page.get_by_role("heading", name=f"Conversation #{interaction_id}")).to_be_visible()
    page.get_by_role("button", name="Save as a golden conversation…").click()
    story = page.get_by_label("Test story (Rasa YAML)")
    expect(story).to_contain_text("utter_greet")
    shot(page, "golden")
    page.get_by_role("button", name="Save golden conversation").click()
    expect(page.get_by_role("status")).to_contain_text("Saved golden conversation")
    assert (stack.project / "tests" / "golden" / f"conversation-{interaction_id}.yml").exists()


def run_training(page: Page, url: str) -> None:
    page.goto(f"{url}/training")
    page.get_by_role("button", name="Validate, train and evaluate").click()
    expect(page.locator("#job")).to_have_attribute("data-state", "running")
    expect(page.locator("#job")).to_have_attribute(
        "data-state", re.compile("succeeded|failed"), timeout=TRAINING_TIMEOUT_MS
    )
    expect(page.locator("#job")).to_have_attribute("data-state", "succeeded")


def test_train_evaluate_promote_refuse_a_broken_model_and_roll_back(
    stack: Stack, page: Page
) -> None:
    url = stack.workbench.url
    assert stack.rasa_model() == stack.first_model.name

    run_training(page, url)
    expect(page.locator("table[data-report]")).to_contain_text("order_status")
    expect(page.locator("[data-golden]")).to_contain_text("passed")
    expect(page.locator("ul[data-decision]")).to_have_attribute("data-decision", "allowed")
    shot(page, "training")
    page.get_by_role("button", name="Promote to the Rasa server").click()
    expect(page.get_by_role("status")).to_contain_text("now serves")
    promoted = stack.rasa_model()
    assert promoted != stack.first_model.name
    expect(page.locator("[data-serving]")).to_have_text(promoted)

    # A deliberately broken model: the greetings that say "hello" moved to goodbye, as a
    # careless edit would, so "hello" now reads as goodbye.
    basics = stack.project / "data" / "nlu" / "basics.yml"
    lines = basics.read_text().splitlines(keepends=True)
    hellos = [line for line in lines if line.startswith("      - hello")]
    assert len(hellos) >= 3
    kept = [line for line in lines if line not in hellos]
    at = kept.index("  - intent: goodbye\n") + 2
    basics.write_text("".join(kept[:at] + hellos + kept[at:]))
    run_training(page, url)
    expect(page.locator("[data-golden]")).to_contain_text("conversation-")
    expect(page.locator("ul[data-decision]")).to_have_attribute("data-decision", "refused")
    expect(page.get_by_role("button", name="Promote to the Rasa server")).to_have_count(0)
    shot(page, "training-refused")
    assert stack.rasa_model() == promoted

    page.get_by_role("button", name="Roll back to the previous model").click()
    # The confirm() dialog is accepted by Playwright's default handler below.
    expect(page.get_by_role("status")).to_contain_text("Rolled back")
    assert stack.rasa_model() == stack.first_model.name
    expect(page.locator("table").last).to_contain_text("rollback")


def test_insights_charts_render_and_their_csv_equals_the_crm(stack: Stack, page: Page) -> None:
    url = stack.workbench.url
    page.goto(f"{url}/insights?start=2000-01-01&end=2100-01-01")
    expect(page.get_by_role("alert")).to_contain_text("at most")
    today = date.today()
    window = f"start={(today - timedelta(days=60)).isoformat()}&end={today.isoformat()}"
    page.goto(f"{url}/insights?{window}")
    expect(page.locator("figure.chart svg")).to_have_count(5)
    shot(page, "insights")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    outcomes = requests.get(f"{url}/insights/outcomes.csv?{window}", cookies=cookies, timeout=30)
    assert outcomes.headers["Content-Type"].startswith("text/csv")
    rows = {
        row["outcome"]: int(row["conversations"])
        for row in csv.DictReader(io.StringIO(outcomes.text))
    }
    per_day = requests.get(
        f"{url}/insights/conversations.csv?{window}", cookies=cookies, timeout=30
    )
    days = Counter()
    for row in csv.DictReader(io.StringIO(per_day.text)):
        days[row["day"]] += int(row["conversations"])
    with unit_of_work(session_factory(stack.crm_url)) as session:
        held = [
            interaction
            for interaction in session.execute(select(models.Interaction)).scalars()
            if interaction.started_at.date() >= today - timedelta(days=60)
        ]
        expected = Counter(i.outcome if i.closed else "open" for i in held)
        expected_days = Counter(i.started_at.date().isoformat() for i in held)
    assert rows == {name: expected.get(name, 0) for name in rows}
    assert sum(rows.values()) == len(held)
    assert {day: n for day, n in days.items() if n} == dict(expected_days)


def test_insights_show_what_waits_for_the_remote_crm(stack: Stack, page: Page) -> None:
    from crm_bridge import outbox
    from crm_bridge.remote.base import EventKind

    url = stack.workbench.url
    page.goto(f"{url}/insights")
    if "/login" in page.url:  # when run on its own
        page.get_by_label("Name").fill(TRAINER)
        page.get_by_label("Password").fill(PASSWORD)
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Insights")).to_be_visible()
    expect(page.locator("[data-outbox]")).to_have_count(0)  # nothing waits: no card

    with unit_of_work(session_factory(stack.crm_url)) as session:
        contact_id = session.execute(select(models.Contact.id)).scalars().first()
        assert contact_id is not None
        for number in (1, 2, 3):
            event = outbox.record(
                session, "hubspot", EventKind.CONTACT_UPSERT, contact_id, f"contact:{number}", {}
            )
            if number == 1:
                event.status, event.attempts = outbox.PARKED, 1
                event.last_error = "RemoteRejected: 400 PROPERTY_DOESNT_EXIST"
    page.goto(f"{url}/insights")
    card = page.locator("[data-outbox]")
    expect(card.locator("[data-outbox-count=pending]")).to_have_text("2")
    expect(card.locator("[data-outbox-count=parked]")).to_have_text("1")
    expect(card.locator("tbody tr")).to_have_count(1)
    expect(card.locator("tbody tr")).to_contain_text("PROPERTY_DOESNT_EXIST")
    expect(card.locator("tbody tr td").last).to_have_text("2")  # holds back two
