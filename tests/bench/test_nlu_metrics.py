"""The benchmark's scoring: out-of-scope counting and the fallback-threshold sweep."""

from __future__ import annotations

import pytest

from bench.nlu.metrics import choose_thresholds, scores, threshold_sweep

GOLD = ["balance", "transfer", "oos", "oos"]
# (best intent, its confidence, the runner-up's confidence) per message
TOP = [
    ("balance", 0.90, 0.05),
    ("transfer", 0.45, 0.40),
    ("balance", 0.50, 0.20),
    ("oos", 0.70, 0.10),
]


def test_scores_count_fallback_and_oos_predictions_as_out_of_scope() -> None:
    result = scores(GOLD, ["balance", "nlu_fallback", "nlu_fallback", "oos"])
    assert result["in_scope_accuracy"] == 0.5
    assert result["oos_recall"] == 1.0


def test_sweep_fires_below_the_threshold() -> None:
    rows = {row["threshold"]: row for row in threshold_sweep(GOLD, TOP, [0.0, 0.48, 0.6])}
    assert (rows[0.0]["in_scope_accuracy"], rows[0.0]["oos_recall"]) == (1.0, 0.5)
    assert (rows[0.48]["in_scope_accuracy"], rows[0.48]["oos_recall"]) == (0.5, 0.5)
    assert (rows[0.6]["in_scope_accuracy"], rows[0.6]["oos_recall"]) == (0.5, 1.0)


def test_sweep_applies_the_ambiguity_threshold_like_the_fallback_classifier() -> None:
    # "transfer" wins by 0.05 only: with ambiguity 0.1 the fallback fires on it.
    [row] = threshold_sweep(GOLD, TOP, [0.0], ambiguity=0.1)
    assert row["in_scope_accuracy"] == pytest.approx(0.5)
    assert row["oos_recall"] == 0.5


def test_threshold_choice_is_the_lowest_reaching_the_goal_then_best_in_scope() -> None:
    thresholds = [0.0, 0.48, 0.6]
    sweeps = {str(a): threshold_sweep(GOLD, TOP, thresholds, a) for a in (0.0, 0.1)}
    # Ambiguity 0 reaches full OOS recall only at 0.6 (in-scope 0.5); ambiguity 0.1 reaches
    # it at 0.6 too, with the same in-scope accuracy: the tie goes to ambiguity 0.
    choice = choose_thresholds(sweeps, 1.0)
    assert choice is not None
    assert (choice["threshold"], choice["ambiguity_threshold"]) == (0.6, 0.0)
    # Half the OOS messages: threshold 0 already does it, where ambiguity 0 keeps all
    # in-scope messages and ambiguity 0.1 loses "transfer".
    choice = choose_thresholds(sweeps, 0.5)
    assert choice is not None and (choice["threshold"], choice["ambiguity_threshold"]) == (0.0, 0.0)
    assert choice["in_scope_accuracy"] == 1.0


def test_threshold_choice_is_none_when_no_setting_reaches_the_goal() -> None:
    sweeps = {"0.0": [{"threshold": 0.0, "in_scope_accuracy": 1.0, "oos_recall": 0.4}]}
    assert choose_thresholds(sweeps, 0.85) is None
