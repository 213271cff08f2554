"""Scores of a candidate model, the held-out split and the promotion rule."""

from __future__ import annotations

import dataclasses

import pytest

from bot.workbench.evaluation import (
    EvaluationReport,
    IntentMetrics,
    cross_validation_summary,
    evaluation_path_for,
    fold_examples,
    plain_text,
    promotion_decision,
    report_from_predictions,
    split_examples,
)

# 10 test examples: greet 4 (3 right, 1 taken for order_status), order_status 4 (all
# right), goodbye 2 (1 right, 1 taken for greet).
TRUTHS = ["greet"] * 4 + ["order_status"] * 4 + ["goodbye"] * 2
PREDICTIONS = ["greet", "greet", "greet", "order_status"] + ["order_status"] * 4
PREDICTIONS += ["goodbye", "greet"]
CONFIDENCES = [0.9, 0.8, 0.7, 0.6, 0.95, 0.9, 0.85, 0.8, 0.7, 0.4]
TEXTS = [f"text {n}" for n in range(10)]


def sample_report(seed: int = 42, **kwargs: object) -> EvaluationReport:
    return report_from_predictions(
        "rapport-0123456789abcdef.tar.gz",
        TRUTHS,
        PREDICTIONS,
        CONFIDENCES,
        TEXTS,
        seed=seed,
        data_fingerprint="0123456789abcdef",
        **kwargs,  # type: ignore[arg-type]
    )


def metrics(f1: float, low: float, high: float, support: int = 10) -> IntentMetrics:
    return IntentMetrics(precision=f1, recall=f1, f1=f1, support=support, f1_low=low, f1_high=high)


def report_with(intents: dict[str, IntentMetrics]) -> EvaluationReport:
    return dataclasses.replace(sample_report(), intents=intents)


# --------------------------------------------------------------------------- metrics


def test_precision_recall_and_f1_are_exact() -> None:
    report = sample_report()
    assert report.n_test == 10
    assert report.accuracy == pytest.approx(0.8)
    greet = report.intents["greet"]
    # greet: TP 3, predicted 4 (one goodbye taken for greet), true 4.
    assert (greet.precision, greet.recall, greet.f1, greet.support) == (0.75, 0.75, 0.75, 4)
    order = report.intents["order_status"]
    # order_status: TP 4, predicted 5, true 4 -> P 0.8, R 1, F1 = 2*0.8/1.8.
    assert order.precision == pytest.approx(0.8)
    assert order.recall == 1.0
    assert order.f1 == pytest.approx(8 / 9, abs=1e-6)
    goodbye = report.intents["goodbye"]
    assert (goodbye.precision, goodbye.recall, goodbye.support) == (1.0, 0.5, 2)
    assert goodbye.f1 == pytest.approx(2 / 3, abs=1e-6)


def test_a_label_only_predicted_has_zero_scores_and_no_support() -> None:
    report = report_from_predictions(
        "m", ["greet", "greet"], ["greet", "nlu_fallback"], [0.9, 0.2], ["a", "b"]
    )
    fallback = report.intents["nlu_fallback"]
    assert (fallback.precision, fallback.recall, fallback.f1, fallback.support) == (0, 0, 0, 0)
    assert set(report.evaluated_intents()) == {"greet"}
    assert report.intents["greet"].recall == 0.5


def test_the_interval_contains_the_estimate_and_is_seeded() -> None:
    report = sample_report()
    for intent in report.intents.values():
        assert 0.0 <= intent.f1_low <= intent.f1 <= intent.f1_high <= 1.0
    assert report.intents["greet"].f1_low < report.intents["greet"].f1_high
    assert sample_report(seed=42).intents == report.intents
    assert sample_report(seed=7).intents != report.intents
    assert report.resamples == 1000 and report.seed == 42


def test_a_perfect_intent_has_a_point_interval() -> None:
    report = report_from_predictions("m", ["a", "a", "b"], ["a", "a", "b"], [1, 1, 1], "xyz")
    assert report.intents["a"] == IntentMetrics(1.0, 1.0, 1.0, 2, 1.0, 1.0)
    assert report.accuracy == 1.0


def test_confusion_matrix_and_most_confused_pairs() -> None:
    report = sample_report()
    assert report.confusion.labels == ("goodbye", "greet", "order_status")
    assert report.confusion.counts == ((1, 1, 0), (0, 3, 1), (0, 0, 4))
    pairs = [(p.true, p.predicted, p.count) for p in report.most_confused]
    assert pairs == [("goodbye", "greet", 1), ("greet", "order_status", 1)]


def test_errors_list_the_confident_mistakes_first() -> None:
    report = sample_report()
    assert [(e.text, e.true, e.predicted, e.confidence) for e in report.errors] == [
        ("text 3", "greet", "order_status", 0.6),
        ("text 9", "goodbye", "greet", 0.4),
    ]
    assert sample_report(max_errors=1).errors == report.errors[:1]


def test_most_confused_keeps_the_top_ten() -> None:
    truths = [f"intent_{n:02d}" for n in range(12) for _ in range(n + 1)]
    predictions = ["other"] * len(truths)
    report = report_from_predictions("m", truths, predictions, [0.5] * len(truths), truths)
    counts = [pair.count for pair in report.most_confused]
    assert counts == list(range(12, 2, -1))


def test_the_report_round_trips_through_json(tmp_path) -> None:
    report = sample_report()
    assert EvaluationReport.from_json(report.to_json()) == report
    path = tmp_path / "rapport-x.evaluation.json"
    report.save(path)
    assert EvaluationReport.load(path) == report
    folds = [sample_report(), sample_report(seed=1)]
    with_cv = dataclasses.replace(report, cross_validation=cross_validation_summary(folds))
    assert EvaluationReport.from_json(with_cv.to_json()) == with_cv


def test_unequal_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        report_from_predictions("m", ["a"], ["a", "b"], [1.0], ["x"])


def test_the_evaluation_sits_beside_the_model(tmp_path) -> None:
    model = tmp_path / "rapport-0123456789abcdef.tar.gz"
    assert evaluation_path_for(model) == tmp_path / "rapport-0123456789abcdef.evaluation.json"


# --------------------------------------------------------------------------- the split


def _examples(n: int, intent: str = "order_status") -> list[str]:
    return [f"{intent} example number {i}" for i in range(n)]


def test_the_split_is_stratified() -> None:
    examples = {
        "big": _examples(100, "big"),
        "small": _examples(2, "small"),
        "single": ["only one"],
    }
    train, test = split_examples(examples)
    assert 10 <= len(test["big"]) <= 30
    assert len(train["small"]) == len(test["small"]) == 1
    assert train["single"] == ["only one"] and "single" not in test
    for intent, texts in examples.items():
        assert sorted(train.get(intent, []) + test.get(intent, [])) == sorted(texts)


def test_every_intent_with_two_examples_keeps_one_on_each_side() -> None:
    for n in range(2, 8):
        for name in ("a", "b", "c", "d", "e"):
            train, test = split_examples({name: _examples(n, name)})
            assert train[name] and test[name], (name, n)


def test_adding_an_example_moves_no_other() -> None:
    examples = {"greet": _examples(30, "greet"), "order_status": _examples(30)}
    train, test = split_examples(examples)
    examples["greet"] = [*examples["greet"], "hello there, new example"]
    new_train, new_test = split_examples(examples)
    for intent in examples:
        assert set(train[intent]) <= set(new_train[intent])
        assert set(test[intent]) <= set(new_test[intent])
    # Removing one moves no other either.
    examples["order_status"] = examples["order_status"][1:]
    after_train, after_test = split_examples(examples)
    assert set(after_test["order_status"]) <= set(new_test["order_status"])
    assert set(after_train["order_status"]) <= set(new_train["order_status"])


def test_the_side_follows_the_plain_text_not_the_markup_or_order() -> None:
    marked = {"order_status": ["where is [10001](order_number)", *_examples(20)]}
    plain = {"order_status": [*_examples(20)[::-1], "where is 10001"]}
    _, marked_test = split_examples(marked)
    _, plain_test = split_examples(plain)
    assert ("where is [10001](order_number)" in marked_test["order_status"]) == (
        "where is 10001" in plain_test["order_status"]
    )
    assert plain_text('order [10001]{"entity": "order_number"}  now') == "order 10001 now"


def test_the_holdout_share_is_checked() -> None:
    with pytest.raises(ValueError):
        split_examples({"a": ["x", "y"]}, holdout=1.0)


def test_folds_cover_every_example_once() -> None:
    examples = {"a": _examples(10, "a"), "b": _examples(3, "b"), "c": ["single"]}
    folds = fold_examples(examples, 3)
    assert len(folds) == 3
    for intent, texts in examples.items():
        held = [text for _, test in folds for text in test.get(intent, [])]
        if len(texts) > 1:
            assert sorted(held) == sorted(texts)
        else:
            assert held == []
    for train, test in folds:
        assert not set(train["a"]) & set(test["a"])
        assert test["b"] and len(test["a"]) in {3, 4}


def test_cross_validation_summary_is_the_mean_and_spread() -> None:
    one = report_with({"greet": metrics(0.8, 0.7, 0.9), "stop": metrics(1.0, 1.0, 1.0)})
    two = report_with({"greet": metrics(0.6, 0.5, 0.7)})
    summary = cross_validation_summary([one, two])
    assert summary.folds == 2
    assert summary.intents["greet"].f1_mean == pytest.approx(0.7)
    assert summary.intents["greet"].f1_std == pytest.approx(0.1)
    assert summary.intents["stop"].folds == 1


# --------------------------------------------------------------------------- promotion


def test_a_drop_within_the_interval_is_allowed() -> None:
    serving = report_with({"order_status": metrics(0.95, 0.88, 1.0)})
    candidate = report_with({"order_status": metrics(0.90, 0.80, 0.97)})
    decision = promotion_decision(candidate, serving, [])
    assert decision.allowed
    assert any("1 compared" in reason for reason in decision.reasons)


def test_exactly_the_lower_bound_is_allowed() -> None:
    serving = report_with({"order_status": metrics(0.95, 0.88, 1.0)})
    candidate = report_with({"order_status": metrics(0.88, 0.80, 0.97)})
    assert promotion_decision(candidate, serving, []).allowed


def test_a_drop_beyond_the_interval_is_refused_with_its_reason() -> None:
    serving = report_with(
        {"order_status": metrics(0.95, 0.88, 1.0), "greet": metrics(0.9, 0.8, 1.0)}
    )
    candidate = report_with(
        {"order_status": metrics(0.70, 0.6, 0.8), "greet": metrics(0.99, 0.9, 1.0)}
    )
    decision = promotion_decision(candidate, serving, [])
    assert not decision.allowed
    assert (
        "F1 of order_status fell from 0.95 to 0.70, below its interval 0.88–1.00"
        in decision.reasons
    )
    assert not any("greet" in reason for reason in decision.reasons)


def test_a_failed_golden_conversation_is_refused() -> None:
    report = report_with({"order_status": metrics(0.95, 0.88, 1.0)})
    decision = promotion_decision(report, report, ["return-shoes"])
    assert not decision.allowed
    assert "golden conversation 'return-shoes' failed" in decision.reasons


def test_without_a_serving_model_the_golden_conversations_decide() -> None:
    candidate = report_with({"order_status": metrics(0.5, 0.2, 0.8)})
    decision = promotion_decision(candidate, None, [])
    assert decision.allowed
    assert any("nothing to compare" in reason for reason in decision.reasons)
    assert not promotion_decision(candidate, None, ["return-shoes"]).allowed


def test_new_and_removed_intents_are_reported_but_do_not_block() -> None:
    serving = report_with(
        {"order_status": metrics(0.9, 0.8, 1.0), "old_intent": metrics(0.9, 0.8, 1.0)}
    )
    candidate = report_with(
        {
            "order_status": metrics(0.9, 0.8, 1.0),
            "new_intent": metrics(0.3, 0.1, 0.5),
            "nlu_fallback": metrics(0.0, 0.0, 0.0, support=0),
        }
    )
    decision = promotion_decision(candidate, serving, [])
    assert decision.allowed
    assert any(r.startswith("new_intent is new (F1 0.30)") for r in decision.reasons)
    assert any(r.startswith("old_intent is no longer evaluated") for r in decision.reasons)
    assert not any("nlu_fallback" in r for r in decision.reasons)
