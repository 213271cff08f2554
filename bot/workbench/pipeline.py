"""The background training run: validate, evaluate on held-out data, train the candidate.

``python -m bot.workbench.pipeline --root PROJECT --models-dir DIR --status STATUS.json
[--folds K] [--golden-dir DIR]`` (started by :class:`bot.workbench.jobs.TrainingJobs`):

1. *validate* the project like ``python -m bot validate`` (every unexplained warning of
   ``rasa data validate`` is a problem), on ``--root`` instead of this checkout;
2. *split* its NLU data (``data/``) into a stable, stratified train and held-out test side
   (:func:`bot.workbench.evaluation.split_examples`); regexes, lookup tables and synonyms
   stay with the train side, which is written as Rasa YAML to a temporary folder;
3. *train an evaluation model*: ``rasa train nlu`` on the train side with the project's
   config.yml and domain (the NLU part of the real model: same components, less data);
4. *evaluate* it: parse every held-out text in-process and build the
   :class:`~bot.workbench.evaluation.EvaluationReport`;
5. (with ``--folds K``) *cross-validate*: K more NLU models, mean F1 ± std per intent;
6. *train the candidate* on all the data with :func:`bot.train.train_if_needed`, so it is
   exactly the ``rapport-<fingerprint>.tar.gz`` that ``make run`` would train (reused if
   it exists), and store the report beside it as ``<stem>.evaluation.json``;
7. *golden conversations*: if ``bot.workbench.golden`` provides
   ``run_golden(model_path, golden_dir, root)``, its ``failures`` go into the status.

The run works on a snapshot of the project's training inputs taken when it starts, so a
trainer who edits the data meanwhile does not get a report of one data set beside a model
of another. After each step (and every second while Rasa prints) the status file is
replaced atomically (:class:`bot.workbench.jobs.JobStatus`). Only counts, intent names and
Rasa's own output (which holds no customer text) are logged; the held-out texts go into
the report, which is for the trainer.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bot.settings import PROJECT_ROOT
from bot.workbench.evaluation import (
    EvaluationReport,
    cross_validation_summary,
    evaluation_path_for,
    fold_examples,
    report_from_predictions,
    split_examples,
)
from bot.workbench.jobs import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    JobStatus,
    now,
    steps_for,
    write_status,
)

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
# Status writes caused by Rasa's output, at most this often (seconds).
LOG_WRITE_INTERVAL = 1.0
EVALUATION_FILE = "evaluation.json"
GOLDEN_MODULE = "bot.workbench.golden"
NLU_FALLBACK = "nlu_fallback"
# Terminal colours in Rasa's output: noise in a web page.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class PipelineError(Exception):
    """A step failed; the message says why, for the trainer."""


class Cancelled(BaseException):
    """The run received SIGTERM (``TrainingJobs.cancel``)."""


# --------------------------------------------------------------------------- progress


class Progress:
    """The run's status, written to the status file after every change (thread-safe)."""

    def __init__(self, path: Path, steps: Sequence[str], folds: int | None) -> None:
        self.path = path
        self.steps = tuple(steps)
        self._lock = threading.RLock()
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._last_write = 0.0
        self.status = JobStatus(
            state=RUNNING,
            step=self.steps[0],
            steps_done=0,
            steps_total=len(self.steps),
            started_at=now(),
            message="Starting",
            folds=folds,
            pid=os.getpid(),
        )
        self._write()

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.status = dataclasses.replace(self.status, **changes)
            self._write()

    def begin(self, step: str, message: str) -> None:
        self.update(step=step, steps_done=self.steps.index(step), message=message)

    def done(self, step: str, message: str) -> None:
        self.update(step=step, steps_done=self.steps.index(step) + 1, message=message)

    def log(self, line: str) -> None:
        """One line of Rasa's output into the tail (written at most once a second)."""
        line = ANSI_ESCAPE.sub("", line).rstrip()
        if not line:
            return
        with self._lock:
            self._tail.append(line[:500])
            if time.monotonic() - self._last_write >= LOG_WRITE_INTERVAL:
                self._write()

    def finish(self, state: str, message: str) -> None:
        self.update(state=state, finished_at=now(), message=message)

    def _write(self) -> None:
        self.status = dataclasses.replace(self.status, log_tail=tuple(self._tail))
        write_status(self.path, self.status)
        self._last_write = time.monotonic()


@contextlib.contextmanager
def captured_output(sink: Callable[[str], None]) -> Iterator[None]:
    """Send everything written to this process's stdout and stderr (its child processes'
    too) line by line to ``sink``, and on to where it went before (the run's log)."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    saved = (os.dup(1), os.dup(2))
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def deliver(line: bytes) -> None:
        # The pipe must be drained whatever happens, or the writers would block.
        with contextlib.suppress(Exception):
            sink(line.decode("utf-8", "replace"))

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            with contextlib.suppress(OSError):
                os.write(saved[0], chunk)
            pending += chunk
            # Progress bars redraw their line with \r: each redraw is a line here.
            *lines, pending = re.split(rb"\r\n|\r|\n", pending)
            for line in lines:
                deliver(line)
        if pending:
            deliver(pending)
        os.close(read_end)

    reader = threading.Thread(target=pump, name="output-pump", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        reader.join(timeout=10)
        for fd in saved:
            os.close(fd)


def run_streaming(command: list[str], cwd: Path, sink: Callable[[str], None], what: str) -> None:
    """Run ``command``, its output line by line into ``sink``; PipelineError if it fails."""
    with captured_output(sink):
        result = subprocess.run(command, cwd=cwd, env=child_environment(), check=False)  # noqa: S603
    if result.returncode != 0:
        raise PipelineError(f"{what} exited with {result.returncode} (see the log)")


def child_environment() -> dict[str, str]:
    """The environment of Rasa's processes: no telemetry, no downloads, our components."""
    from crm_bridge.settings import process_environment

    env = process_environment()
    env["RASA_TELEMETRY_ENABLED"] = "false"
    # Rasa's DEBUG lines carry message texts (and LOG_LEVEL may be DEBUG for the servers).
    env["LOG_LEVEL"] = "INFO"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PROJECT_ROOT) not in paths:
        paths.insert(0, str(PROJECT_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# --------------------------------------------------------------------------- the steps


def snapshot_project(root: Path, target: Path) -> Path:
    """Copy what training reads (``bot.train.training_inputs``) and what validation reads
    (``actions/``) of ``root`` to ``target``: the same fingerprint, frozen for the run."""
    from bot.train import training_inputs

    files = [p for p in training_inputs(root) if p.is_file()]
    actions = root / "actions"
    if actions.is_dir():
        files += sorted(p for p in actions.rglob("*.py") if p.is_file())
    for path in files:
        copy = target / path.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    return target


def validate_project(root: Path) -> list[str]:
    """``python -m bot validate`` for ``root``: the problems (empty when the data is fine)."""
    from bot.validate import project_problems

    return project_problems(root)


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """A test example: its full intent (``faq/opening_hours`` for retrieval intents)."""

    intent: str
    text: str


def load_nlu(root: Path) -> Any:
    """The project's NLU training data (Rasa's ``TrainingData``) from ``root/data``."""
    from rasa.shared.data import get_data_files, is_nlu_file
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.nlu.training_data.training_data import TrainingData

    files = sorted(get_data_files([str(root / "data")], is_nlu_file))
    return TrainingData().merge(*(load_data(path) for path in files))


def examples_by_intent(data: Any) -> dict[str, list[str]]:
    """Each full intent's example texts (plain text, without entity markup)."""
    examples: dict[str, list[str]] = {}
    for message in data.intent_examples:
        examples.setdefault(message.get_full_intent(), []).append(message.get("text"))
    return examples


def training_subset(data: Any, keep: Mapping[str, Sequence[str]]) -> Any:
    """``data`` with only the intent examples in ``keep``, and all of its regexes, lookup
    tables, synonyms, responses and examples without an intent."""
    from rasa.shared.nlu.training_data.training_data import TrainingData

    wanted = {(intent, text) for intent, texts in keep.items() for text in texts}
    messages = [
        message
        for message in data.nlu_examples
        if not message.get("intent") or (message.get_full_intent(), message.get("text")) in wanted
    ]
    return TrainingData(
        training_examples=messages,
        entity_synonyms=dict(data.entity_synonyms),
        regex_features=list(data.regex_features),
        lookup_tables=list(data.lookup_tables),
        responses=dict(data.responses),
    )


def write_nlu(data: Any, folder: Path) -> Path:
    """Write ``data`` as one Rasa YAML file in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nlu.yml"
    path.write_text(data.nlu_as_yaml(), encoding="utf-8")
    return path


def held_out(test: Mapping[str, Sequence[str]]) -> list[HeldOut]:
    return [HeldOut(intent, text) for intent, texts in test.items() for text in texts]


def train_nlu_model(
    root: Path, nlu: Path, out: Path, name: str, sink: Callable[[str], None]
) -> Path:
    """``rasa train nlu`` with the project's config and domain on the ``nlu`` folder."""
    command = [
        sys.executable,
        "-m",
        "rasa",
        "train",
        "nlu",
        "--config",
        str(root / "config.yml"),
        "--domain",
        str(root / "domain.yml"),
        "--nlu",
        str(nlu),
        "--out",
        str(out),
        "--fixed-model-name",
        name,
    ]
    run_streaming(command, root, sink, "rasa train nlu")
    model = out / f"{name}.tar.gz"
    if not model.exists():
        raise PipelineError("rasa train nlu finished without writing a model")
    return model


def predicted_label(parse: Mapping[str, Any]) -> tuple[str, float]:
    """The label and confidence of one parse result: for a retrieval intent the response
    selector's full key (``faq/opening_hours``), else the intent (``nlu_fallback`` too)."""
    intent = parse.get("intent") or {}
    name = intent.get("name") or NLU_FALLBACK
    confidence = float(intent.get("confidence") or 0.0)
    if intent.get("full_retrieval_intent_name"):
        return str(intent["full_retrieval_intent_name"]), confidence
    selectors = parse.get("response_selector") or {}
    selected = selectors.get(name) or (
        selectors.get("default") if name in selectors.get("all_retrieval_intents", []) else None
    )
    if selected:
        key = (selected.get("response") or {}).get("intent_response_key")
        if key:
            return str(key), confidence
    return str(name), confidence


def predict(model: Path, texts: Sequence[str]) -> list[tuple[str, float, bool]]:
    """Parse ``texts`` with the NLU model: (label, confidence, had a response selector)."""
    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    # Rasa logs every parsed text at DEBUG ("processor.message.parse"): keep it at INFO.
    configure_structlog(logging.INFO)
    agent = Agent.load(str(model))

    async def parse_all() -> list[tuple[str, float, bool]]:
        results = []
        for text in texts:
            parse = await agent.parse_message(text)
            label, confidence = predicted_label(parse)
            results.append((label, confidence, "response_selector" in parse))
        return results

    return asyncio.run(parse_all())


def evaluate_model(
    model: Path,
    test: Sequence[HeldOut],
    model_name: str,
    data_fingerprint: str,
    seed: int = 42,
) -> EvaluationReport:
    """Predict every held-out text with ``model`` and score the predictions."""
    predictions = predict(model, [example.text for example in test])
    has_selector = any(selector for _, _, selector in predictions)
    # Without a ResponseSelector the model only knows "faq", not "faq/opening_hours".
    truths = [
        example.intent if has_selector else example.intent.split("/", 1)[0] for example in test
    ]
    return report_from_predictions(
        model_name,
        truths,
        [label for label, _, _ in predictions],
        [confidence for _, confidence, _ in predictions],
        [example.text for example in test],
        seed=seed,
        data_fingerprint=data_fingerprint,
    )


def run_golden_hook(
    model: Path, golden_dir: Path | None, root: Path
) -> tuple[bool, list[str], str]:
    """Run the golden conversations if ``bot.workbench.golden`` offers ``run_golden``:
    (whether they ran, the failures, a sentence for the status)."""
    golden = sys.modules.get(GOLDEN_MODULE)
    if golden is None:
        if importlib.util.find_spec(GOLDEN_MODULE) is None:
            return False, [], "Golden conversations skipped: the workbench has no golden module"
        golden = importlib.import_module(GOLDEN_MODULE)
    run_golden = getattr(golden, "run_golden", None)
    if run_golden is None:
        return False, [], "Golden conversations skipped: the golden module has no run_golden"
    if golden_dir is None:
        return False, [], "Golden conversations skipped: no golden conversations folder given"
    result = run_golden(model, golden_dir, root)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    failures = [str(name) for name in result.failures]
    if failures:
        return True, failures, f"{len(failures)} golden conversation(s) failed"
    return True, [], "Every golden conversation passed"


# --------------------------------------------------------------------------- the run


def run(
    root: Path,
    models_dir: Path,
    progress: Progress,
    folds: int | None = None,
    golden_dir: Path | None = None,
    holdout: float = 0.2,
) -> None:
    """Every step of the run; raises PipelineError with the trainer's message on failure."""
    from bot.train import fingerprint, model_path_for, train_if_needed

    work_parent = progress.path.parent
    work_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="training-run-", dir=work_parent) as scratch:
        work = Path(scratch)
        project = snapshot_project(root, work / "project")

        progress.begin("validate", "Checking the training data (rasa data validate)")
        with captured_output(progress.log):
            problems = validate_project(project)
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise PipelineError(f"The training data has problems: {shown}{more}")
        progress.done("validate", "The training data is valid")

        progress.begin("split", "Setting examples aside for the test")
        data = load_nlu(project)
        examples = examples_by_intent(data)
        train, test = split_examples(examples, holdout)
        test_examples = held_out(test)
        if not test_examples:
            raise PipelineError("No intent has two examples: there is nothing to test on")
        train_folder = write_nlu(training_subset(data, train), work / "train")
        progress.done(
            "split",
            f"{sum(map(len, train.values()))} examples to train on, "
            f"{len(test_examples)} held out, {len(examples)} intents",
        )
        logger.info(
            "Split: %d train, %d test examples", sum(map(len, train.values())), len(test_examples)
        )

        progress.begin("train-evaluation-model", "Training a model on the rest (rasa train nlu)")
        evaluation_model = train_nlu_model(
            project, train_folder.parent, work / "models", "evaluation", progress.log
        )
        progress.done("train-evaluation-model", "The evaluation model is trained")

        progress.begin("evaluate", "Testing it on the held-out examples")
        data_fingerprint = fingerprint(project)
        candidate_path = model_path_for(models_dir, project)
        report = evaluate_model(
            evaluation_model, test_examples, candidate_path.name, data_fingerprint
        )
        work_report = work_parent / EVALUATION_FILE
        report.save(work_report)
        progress.update(evaluation_report=str(work_report))
        progress.done(
            "evaluate", f"Accuracy {report.accuracy:.1%} on {report.n_test} held-out examples"
        )

        if folds:
            progress.begin("cross-validate", f"Cross-validating ({folds} folds)")
            fold_reports = []
            for number, (fold_train, fold_test) in enumerate(fold_examples(examples, folds), 1):
                progress.update(message=f"Cross-validating: fold {number} of {folds}")
                folder = write_nlu(training_subset(data, fold_train), work / f"fold-{number}")
                model = train_nlu_model(
                    project, folder, work / "models", f"fold-{number}", progress.log
                )
                fold_reports.append(
                    evaluate_model(
                        model, held_out(fold_test), candidate_path.name, data_fingerprint
                    )
                )
                model.unlink(missing_ok=True)
            summary = cross_validation_summary(fold_reports)
            report = dataclasses.replace(report, cross_validation=summary)
            report.save(work_report)
            progress.done(
                "cross-validate",
                f"Cross-validation: accuracy {summary.accuracy_mean:.1%} "
                f"± {summary.accuracy_std:.1%}",
            )

        progress.begin(
            "train-candidate", f"Training the candidate {candidate_path.name} on all the data"
        )
        with captured_output(progress.log):
            try:
                candidate = train_if_needed(models_dir, root=project)
            except subprocess.CalledProcessError as error:
                raise PipelineError(f"rasa train exited with {error.returncode}") from None
        if candidate.name != candidate_path.name:
            raise PipelineError(f"rasa train wrote {candidate.name}, not {candidate_path.name}")
        stored = evaluation_path_for(candidate)
        report.save(stored)
        progress.update(candidate_model=str(candidate), evaluation_report=str(stored))
        progress.done("train-candidate", f"The candidate {candidate.name} is trained")

        progress.begin("golden", "Running the golden conversations")
        try:
            ran, failures, message = run_golden_hook(candidate, golden_dir, root)
        except Exception as error:
            # Not checked is not passed: golden_checked stays false for the promotion.
            ran, failures = False, []
            message = f"Golden conversations could not run: {type(error).__name__}: {error}"
        progress.update(golden_checked=ran, golden_failures=tuple(failures))
        progress.done("golden", message)

        summary_line = (
            f"Candidate {candidate.name}: accuracy {report.accuracy:.1%} on "
            f"{report.n_test} held-out examples. {message.rstrip('.')}."
        )
        progress.finish(SUCCEEDED, summary_line)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Cancelled


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring); exit 0 when the run succeeded."""
    parser = argparse.ArgumentParser(prog="python -m bot.workbench.pipeline", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the project to train")
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True, help="the status file to write")
    parser.add_argument("--folds", type=int, default=None, help="also cross-validate, K folds")
    parser.add_argument("--golden-dir", type=Path, default=None)
    parser.add_argument("--holdout", type=float, default=0.2, help="share of examples held out")
    parser.add_argument("--nice", type=int, default=10, help="lower this run's CPU priority")
    args = parser.parse_args(argv)
    if args.folds is not None and args.folds < 2:
        parser.error("--folds needs at least 2")

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from bot import settings as bot_settings

    settings = bot_settings.current()
    bot_settings.export_for_rasa(settings)
    bot_settings.forbid_hub_downloads()
    if args.nice:
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    signal.signal(signal.SIGTERM, _on_sigterm)

    progress = Progress(args.status, steps_for(args.folds), args.folds)
    try:
        run(
            args.root.resolve(),
            args.models_dir.resolve(),
            progress,
            folds=args.folds,
            golden_dir=args.golden_dir,
            holdout=args.holdout,
        )
    except Cancelled:
        progress.finish(FAILED, f"Cancelled during '{progress.status.step}'")
        return 1
    except PipelineError as error:
        progress.finish(FAILED, str(error))
        return 1
    except Exception as error:
        traceback.print_exc()
        progress.finish(
            FAILED,
            f"'{progress.status.step}' failed unexpectedly: {type(error).__name__}: "
            f"{str(error)[:300]} (see the training log)",
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
