"""The benchmark runs the project's own pipeline, with --epochs reaching every trainer."""

from __future__ import annotations

from pathlib import Path

from bench.nlu.rasa_pipeline import benchmark_config

CONFIG = Path(__file__).resolve().parents[2] / "config.yml"


def by_name(config: dict) -> dict[str, dict]:
    return {component["name"].rsplit(".", 1)[-1]: component for component in config["pipeline"]}


def test_benchmark_uses_the_bot_pipeline_without_the_faq_selector() -> None:
    components = by_name(benchmark_config(CONFIG, None))
    assert "ResponseSelector" not in components
    assert components["SentenceEncoderFeaturizer"]["fine_tune_epochs"] == 3
    assert components["FallbackClassifier"]["threshold"] == 0.26
    assert components["EncoderIntentClassifier"]["distance_penalty"] == 2


def test_epochs_override_shortens_fine_tuning_too() -> None:
    components = by_name(benchmark_config(CONFIG, 1))
    assert components["SentenceEncoderFeaturizer"]["fine_tune_epochs"] == 1
    assert "epochs" not in components["EncoderIntentClassifier"]
