"""The background training run, end to end on a tiny project, through ``TrainingJobs``.

The tiny project has six intents of the real data (two of them FAQ retrieval intents),
the order-number regex, and a config that trains in seconds (logistic regression, a
5-epoch ResponseSelector, no MiniLM), so the whole pipeline (validate, split, train an
NLU model, evaluate, train the candidate with ``bot.train``) runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from bot.settings import PROJECT_ROOT
from bot.train import fingerprint
from bot.workbench.evaluation import EvaluationReport, evaluation_path_for
from bot.workbench.jobs import JobStatus, TrainingJobs, read_status, write_status
from bot.workbench.pipeline import (
    captured_output,
    examples_by_intent,
    load_nlu,
    predicted_label,
    run_golden_hook,
    snapshot_project,
    steps_for,
    training_subset,
    validate_project,
)
from crm_bridge.errors import Conflict

TINY_INTENTS = {
    "basics.yml": ["greet", "goodbye"],
    "orders.yml": ["order_status", "delivery_problem"],
    "faq.yml": ["faq/opening_hours", "faq/shipping_policy"],
}
TINY_CONFIG = """\
recipe: default.v1
language: en
assistant_id: tiny-workbench-test
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: CountVectorsFeaturizer
  - name: LogisticRegressionClassifier
    random_state: 42
  - name: RegexEntityExtractor
    use_word_boundaries: true
  - name: EntitySynonymMapper
  - name: ResponseSelector
    epochs: 5
    retrieval_intent: faq
    random_seed: 42
policies:
  - name: MemoizationPolicy
  - name: RulePolicy
"""
RUN_TIMEOUT_SECONDS = 600


def make_tiny_project(root: Path) -> Path:
    """A small, valid Rasa project made of a few intents of the real data."""
    (root / "data" / "nlu").mkdir(parents=True)
    (root / "data" / "rules").mkdir(parents=True)
    for name, intents in TINY_INTENTS.items():
        real = yaml.safe_load((PROJECT_ROOT / "data" / "nlu" / name).read_text())
        blocks = [block for block in real["nlu"] if block.get("intent") in intents]
        assert len(blocks) == len(intents), f"{name} lost one of {intents}"
        (root / "data" / "nlu" / name).write_text(
            yaml.safe_dump({"version": "3.1", "nlu": blocks}, sort_keys=False)
        )
    regex = yaml.safe_load((PROJECT_ROOT / "data" / "nlu" / "regex.yml").read_text())
    regex["nlu"] = [block for block in regex["nlu"] if block.get("regex") == "order_number"]
    (root / "data" / "nlu" / "regex.yml").write_text(yaml.safe_dump(regex, sort_keys=False))

    replies = {
        "greet": "utter_greet",
        "goodbye": "utter_goodbye",
        "order_status": "utter_order_status",
        "delivery_problem": "utter_delivery_problem",
        "faq": "utter_faq",
    }
    responses = {name: [{"text": f"({name})"}] for name in replies.values() if name != "utter_faq"}
    responses["utter_faq/opening_hours"] = [{"text": "We are open 9 to 5."}]
    responses["utter_faq/shipping_policy"] = [{"text": "Shipping is free from 50 euros."}]
    domain = {
        "version": "3.1",
        "intents": list(replies),
        "entities": ["order_number"],
        "responses": responses,
    }
    (root / "domain.yml").write_text(yaml.safe_dump(domain, sort_keys=False))
    rules = [
        {"rule": f"answer {intent}", "steps": [{"intent": intent}, {"action": action}]}
        for intent, action in replies.items()
    ]
    (root / "data" / "rules" / "rules.yml").write_text(
        yaml.safe_dump({"version": "3.1", "rules": rules}, sort_keys=False)
    )
    (root / "config.yml").write_text(TINY_CONFIG)
    return root


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_tiny_project(tmp_path / "project")


def wait_until_finished(jobs: TrainingJobs, timeout: float = RUN_TIMEOUT_SECONDS) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.status()
        assert status is not None
        if not status.running:
            return status
        time.sleep(0.5)
    jobs.cancel()
    raise AssertionError(f"the run did not finish in {timeout} s: {jobs.status()}")


# --------------------------------------------------------------------------- end to end


def test_a_run_evaluates_and_trains_the_candidate(tiny_project: Path, tmp_path: Path) -> None:
    models_dir, work_dir = tmp_path / "models", tmp_path / "work"
    jobs = TrainingJobs(tiny_project, models_dir, work_dir)
    assert jobs.status() is None

    started = time.monotonic()
    status = jobs.start()
    assert status.running and status.pid
    with pytest.raises(Conflict, match="already in progress"):
        jobs.start()
    with pytest.raises(Conflict):
        TrainingJobs(tiny_project, models_dir, work_dir).start()  # another web worker

    status = wait_until_finished(jobs)
    elapsed = time.monotonic() - started
    log = (work_dir / "training.log").read_text()
    assert status.succeeded, f"{status.message}\n{log[-3000:]}"
    print(f"tiny pipeline: {elapsed:.1f} s")

    assert status.steps_done == status.steps_total == len(steps_for(None))
    assert status.finished_at and status.log_tail
    assert not status.golden_checked and status.golden_failures == ()
    candidate = Path(status.candidate_model or "")
    assert candidate.is_file()
    assert candidate.name == f"rapport-{fingerprint(tiny_project)}.tar.gz"
    assert Path(status.evaluation_report or "") == evaluation_path_for(candidate)

    report = EvaluationReport.load(evaluation_path_for(candidate))
    assert report.model == candidate.name
    assert report.data_fingerprint == fingerprint(tiny_project)
    assert report.n_test > 0
    assert set(report.evaluated_intents()) == {
        "greet",
        "goodbye",
        "order_status",
        "delivery_problem",
        "faq/opening_hours",
        "faq/shipping_policy",
    }
    for metrics in report.intents.values():
        for value in (metrics.precision, metrics.recall, metrics.f1):
            assert 0.0 <= value <= 1.0
        assert metrics.f1_low <= metrics.f1 <= metrics.f1_high
    assert sum(m.support for m in report.intents.values()) == report.n_test
    assert 0.5 < report.accuracy <= 1.0
    assert jobs.latest_evaluation(candidate.name) == report
    assert jobs.latest_evaluation(candidate.name.removesuffix(".tar.gz")) == report
    assert jobs.latest_evaluation() == report
    assert jobs.latest_evaluation("../evil.tar.gz") is None

    # No customer text in what the pipeline logs about itself: the held-out texts are in
    # the report, not in the log or the status.
    status_text = (work_dir / "training-status.json").read_text()
    for error in report.errors:
        assert error.text not in status_text


def test_invalid_data_fails_the_run_with_its_reason(tiny_project: Path, tmp_path: Path) -> None:
    domain = yaml.safe_load((tiny_project / "domain.yml").read_text())
    domain["responses"]["utter_never_used"] = [{"text": "nobody sends me"}]
    (tiny_project / "domain.yml").write_text(yaml.safe_dump(domain, sort_keys=False))
    jobs = TrainingJobs(tiny_project, tmp_path / "models", tmp_path / "work")
    jobs.start()
    status = wait_until_finished(jobs, timeout=180)
    assert status.state == "failed"
    assert status.step == "validate"
    assert "utter_never_used" in status.message
    assert not list((tmp_path / "models").glob("*.tar.gz"))


# --------------------------------------------------------------------------- the job handle


def test_a_dead_run_is_reported_failed(tmp_path: Path) -> None:
    jobs = TrainingJobs(tmp_path, tmp_path / "models", tmp_path / "work")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "training.lock").touch()
    running = JobStatus(
        state="running", step="train-candidate", steps_done=4, steps_total=6, started_at="x"
    )
    write_status(jobs.status_path, running)
    status = jobs.status()
    assert status is not None and status.state == "failed"
    assert "stopped unexpectedly during 'train-candidate'" in status.message
    assert read_status(jobs.status_path) == status
    assert jobs.cancel() == status  # nothing to cancel


def test_cancel_stops_the_run(tiny_project: Path, tmp_path: Path) -> None:
    jobs = TrainingJobs(tiny_project, tmp_path / "models", tmp_path / "work")
    jobs.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the pipeline has taken over the status
        status = jobs.status()
        if status and status.pid:
            break
        time.sleep(0.2)
    jobs.cancel()
    status = wait_until_finished(jobs, timeout=60)
    assert status.state == "failed"
    assert status.message.startswith("Cancelled during"), status.message
    jobs.start()  # the lock is free again
    jobs.cancel()
    wait_until_finished(jobs, timeout=60)


def test_the_status_file_round_trips(tmp_path: Path) -> None:
    status = JobStatus(
        state="succeeded",
        step="golden",
        steps_done=6,
        steps_total=6,
        started_at="2024-01-01T00:00:00+00:00",
        finished_at="2024-01-01T00:05:00+00:00",
        message="done",
        log_tail=("a", "b"),
        candidate_model="/m/rapport-1.tar.gz",
        evaluation_report="/m/rapport-1.evaluation.json",
        golden_checked=True,
        golden_failures=("return-shoes",),
        folds=3,
        pid=123,
    )
    path = tmp_path / "status.json"
    write_status(path, status)
    assert read_status(path) == status
    assert json.loads(path.read_text())["state"] == "succeeded"
    assert not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------- the pieces


def test_the_train_side_keeps_regexes_and_only_its_examples(tiny_project: Path) -> None:
    from bot.workbench.evaluation import split_examples

    data = load_nlu(tiny_project)
    examples = examples_by_intent(data)
    assert "faq/opening_hours" in examples and "order_status" in examples
    train, test = split_examples(examples)
    subset = training_subset(data, train)
    assert subset.regex_features == data.regex_features
    kept = examples_by_intent(subset)
    assert {i: sorted(t) for i, t in kept.items()} == {i: sorted(t) for i, t in train.items()}
    written = subset.nlu_as_yaml()
    assert "regex: order_number" in written
    assert "[10001](order_number)" in written or "(order_number)" in written
    held = {text for texts in test.values() for text in texts}
    assert not held & {text for texts in kept.values() for text in texts}


def test_validation_accepts_the_tiny_project_and_names_problems(tiny_project: Path) -> None:
    assert validate_project(tiny_project) == []
    domain = yaml.safe_load((tiny_project / "domain.yml").read_text())
    domain["responses"]["utter_never_used"] = [{"text": "nobody sends me"}]
    (tiny_project / "domain.yml").write_text(yaml.safe_dump(domain, sort_keys=False))
    problems = validate_project(tiny_project)
    assert any("utter_never_used" in problem for problem in problems)


def test_the_snapshot_has_the_same_fingerprint(tiny_project: Path, tmp_path: Path) -> None:
    copy = snapshot_project(tiny_project, tmp_path / "copy")
    assert fingerprint(copy) == fingerprint(tiny_project)


def test_predicted_label_uses_the_response_selector_for_retrieval_intents() -> None:
    parse = {
        "intent": {"name": "faq", "confidence": 0.9},
        "response_selector": {
            "all_retrieval_intents": ["faq"],
            "faq": {"response": {"intent_response_key": "faq/opening_hours"}},
        },
    }
    assert predicted_label(parse) == ("faq/opening_hours", 0.9)
    assert predicted_label({"intent": {"name": "greet", "confidence": 0.5}}) == ("greet", 0.5)
    assert predicted_label({"intent": None}) == ("nlu_fallback", 0.0)
    default = {
        "intent": {"name": "faq", "confidence": 0.7},
        "response_selector": {
            "all_retrieval_intents": ["faq"],
            "default": {"response": {"intent_response_key": "faq/warranty"}},
        },
    }
    assert predicted_label(default) == ("faq/warranty", 0.7)


def test_captured_output_streams_child_output_line_by_line() -> None:
    import subprocess
    import sys

    lines: list[str] = []
    with captured_output(lines.append):
        subprocess.run([sys.executable, "-c", "print('one'); print('two\\rthree')"], check=True)
        os.write(1, b"four\n")  # this process's own output (pytest swaps sys.stdout)
    os.write(1, b"five\n")  # after the block, output goes where it went before
    assert lines == ["one", "two", "three", "four"]


def test_the_golden_hook_runs_when_the_module_offers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    calls = []

    def run_golden(model_path: Path, golden_dir: Path, root: Path) -> object:
        calls.append((model_path, golden_dir, root))
        return types.SimpleNamespace(failures=["return-shoes"])

    golden = types.ModuleType("bot.workbench.golden")
    golden.run_golden = run_golden  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bot.workbench.golden", golden)
    model, folder = tmp_path / "m.tar.gz", tmp_path / "golden"
    assert run_golden_hook(model, folder, tmp_path) == (
        True,
        ["return-shoes"],
        "1 golden conversation(s) failed",
    )
    assert calls == [(model, folder, tmp_path)]
    ran, failures, message = run_golden_hook(model, None, tmp_path)
    assert (ran, failures) == (False, []) and "no golden conversations folder" in message

    async def passing(model_path: Path, golden_dir: Path, root: Path) -> object:
        return types.SimpleNamespace(failures=[])

    golden.run_golden = passing  # type: ignore[attr-defined]
    assert run_golden_hook(model, folder, tmp_path) == (
        True,
        [],
        "Every golden conversation passed",
    )
    del golden.run_golden  # type: ignore[attr-defined]
    assert run_golden_hook(model, folder, tmp_path)[0] is False
