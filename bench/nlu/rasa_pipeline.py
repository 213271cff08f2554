"""Train a Rasa NLU pipeline on a benchmark split and measure it like the bot uses it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from bench.nlu.datasets import Split
from bench.nlu.metrics import FALLBACK, choose_thresholds, percentile, scores, threshold_sweep

# Components that need training data the benchmarks don't have (FAQ answers, entities).
NOT_FOR_INTENT_BENCHMARKS = {"ResponseSelector"}
WARM_UP_PARSES = 10
LATENCY_SAMPLE = 500
# Thresholds 0.00-0.95 in steps of 0.01: with 100 out-of-scope messages in CLINC150's val,
# one message is one point of recall, and a 0.05 grid can step over the setting that
# reaches a goal. The printout shows every fifth row; the JSON has them all.
SWEEP = [round(0.01 * step, 2) for step in range(96)]
# The FallbackClassifier's second knob: it also fires when the best two intents are
# closer than this. The sweep is repeated for each so both can be chosen on val.
AMBIGUITY_SWEEP = [0.0, 0.05, 0.1, 0.15, 0.2]


def benchmark_config(config_path: Path, epochs: int | None) -> dict[str, Any]:
    """The pipeline of ``config_path`` without FAQ-only components (and with ``epochs``)."""
    config: dict[str, Any] = yaml.safe_load(config_path.read_text())
    pipeline = [c for c in config["pipeline"] if c["name"] not in NOT_FOR_INTENT_BENCHMARKS]
    if epochs is not None:
        for component in pipeline:
            if "epochs" in component or component["name"] == "DIETClassifier":
                component["epochs"] = epochs
            if "fine_tune_epochs" in component:  # the sentence encoder's fine-tuning
                component["fine_tune_epochs"] = epochs
    return {
        "recipe": "default.v1",
        "language": "en",
        "pipeline": pipeline,
        "assistant_id": "nlu-benchmark",
        "policies": [],
    }


def write_nlu_yaml(split: Split, path: Path) -> None:
    """Rasa training data for the split (one intent block per label)."""
    by_label: dict[str, list[str]] = {}
    for text, label in zip(split.texts, split.labels, strict=False):
        by_label.setdefault(label, []).append(" ".join(text.split()))
    blocks = [
        {"intent": label, "examples": "".join(f"- {text}\n" for text in sorted(set(texts)))}
        for label, texts in sorted(by_label.items())
    ]
    path.write_text(yaml.safe_dump({"version": "3.1", "nlu": blocks}, allow_unicode=True))


def run_rasa_pipeline(
    train: Split,
    test: Split,
    config_path: Path,
    epochs: int | None,
    name: str,
    oos_recall_goal: float = 0.85,
) -> dict[str, Any]:
    """Train with Rasa, parse every test message, and report scores, time, size, memory."""
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    logging.getLogger("rasa").setLevel(logging.WARNING)
    from rasa.model_training import train_nlu
    from rasa.utils.log_utils import configure_structlog

    # Rasa logs every parsed message at debug level; a benchmark parses thousands.
    configure_structlog(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="nlu-bench-") as workdir:
        folder = Path(workdir)
        config_file = folder / "config.yml"
        config_file.write_text(yaml.safe_dump(benchmark_config(config_path, epochs)))
        data_file = folder / "nlu.yml"
        write_nlu_yaml(train, data_file)
        # A cache of its own: Rasa's shared training cache (.rasa/cache) would hand a
        # repeated run its old components and report a training time of seconds.
        previous_cache = os.environ.get("RASA_CACHE_DIRECTORY")
        os.environ["RASA_CACHE_DIRECTORY"] = str(folder / "cache")
        try:
            started = time.perf_counter()
            model = train_nlu(
                str(config_file), str(data_file), str(folder / "models"), fixed_model_name="bench"
            )
            train_seconds = time.perf_counter() - started
        finally:
            if previous_cache is None:
                del os.environ["RASA_CACHE_DIRECTORY"]
            else:
                os.environ["RASA_CACHE_DIRECTORY"] = previous_cache
        if model is None:
            raise RuntimeError("Rasa did not produce a model")
        model_bytes = Path(model).stat().st_size
        predicted, top, latencies = parse_in_fresh_process(model, test.texts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    threshold, ambiguity = _fallback_thresholds(config_path)
    extra: dict[str, Any] = {
        "fallback_threshold": threshold,
        "ambiguity_threshold": ambiguity,
        # The classifier's own answer, as if the FallbackClassifier were off: comparable
        # with the baseline and published figures, which have no fallback.
        "without_fallback": scores(test.labels, [name for name, _, _ in top]),
    }
    # Every dataset gets the sweep: on data without out-of-scope examples it shows what
    # each threshold costs in accuracy (every fallback there is an error).
    extra["threshold_sweep"] = threshold_sweep(test.labels, top, SWEEP, ambiguity or 0.0)
    extra["ambiguity_sweep"] = {
        str(value): threshold_sweep(test.labels, top, SWEEP, value) for value in AMBIGUITY_SWEEP
    }
    if "oos_recall" in extra["without_fallback"]:
        extra["oos_recall_goal"] = oos_recall_goal
        extra["threshold_choice"] = choose_thresholds(extra["ambiguity_sweep"], oos_recall_goal)
    return {
        "name": name,
        **scores(test.labels, predicted),
        **extra,
        "train_seconds": train_seconds,
        "parse_ms_p50": percentile(latencies, 50),
        "parse_ms_p99": percentile(latencies, 99),
        "model_mb": model_bytes / 1e6,
        "peak_rss_mb": peak_mb,
        "predictions": predicted,
    }


def _fallback_thresholds(config_path: Path) -> tuple[float | None, float | None]:
    """The FallbackClassifier's threshold and ambiguity threshold (Rasa's defaults when
    unset), or None and None without a FallbackClassifier."""
    for component in yaml.safe_load(config_path.read_text())["pipeline"]:
        if component["name"] == "FallbackClassifier":
            return (
                float(component.get("threshold", 0.3)),
                float(component.get("ambiguity_threshold", 0.1)),
            )
    return None, None


def parse_in_fresh_process(
    model: str, texts: list[str]
) -> tuple[list[str], list[tuple[str, float, float]], list[float]]:
    """``_parse_all`` in a new interpreter that only loads the model, as a server does.
    Parsing in the process that just trained would time the leftovers of training too
    (a heap of several GB for the garbage collector to walk, warm thread pools)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as worker:
        return worker.submit(_parse_all_quietly, model, texts).result()


def _parse_all_quietly(
    model: str, texts: list[str]
) -> tuple[list[str], list[tuple[str, float, float]], list[float]]:
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    logging.getLogger("rasa").setLevel(logging.WARNING)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)
    return asyncio.run(_parse_all(model, texts))


async def _parse_all(
    model: str, texts: list[str]
) -> tuple[list[str], list[tuple[str, float, float]], list[float]]:
    """Each message's predicted intent; its best non-fallback intent with confidence and
    the runner-up's confidence (for the threshold sweep); the parse latencies in ms."""
    from rasa.core.agent import Agent

    agent = Agent.load(model)
    for text in texts[:WARM_UP_PARSES]:
        await agent.parse_message(text)
    predicted: list[str] = []
    top: list[tuple[str, float, float]] = []
    latencies: list[float] = []
    for index, text in enumerate(texts):
        t0 = time.perf_counter()
        parsed = await agent.parse_message(text)
        if index < LATENCY_SAMPLE:
            latencies.append((time.perf_counter() - t0) * 1000)
        predicted.append((parsed.get("intent") or {}).get("name") or "")
        ranking = [r for r in parsed.get("intent_ranking") or [] if r["name"] != FALLBACK]
        confidences = [r["confidence"] for r in ranking] + [0.0, 0.0]
        top.append((ranking[0]["name"] if ranking else "", confidences[0], confidences[1]))
    return predicted, top, latencies
