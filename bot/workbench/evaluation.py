"""How good is a candidate model, and may it replace the one that serves?

Pure and fast (NumPy only): the pipeline (``bot.workbench.pipeline``) trains and predicts,
this module splits the data, scores the predictions and applies the promotion rule.

* :func:`split_examples` holds out a stable, stratified fifth of each intent's examples:
  an example's side follows from a hash of its intent and plain text, so editing the data
  does not reshuffle the test set (and two evaluations of nearly the same data compare).
* :func:`report_from_predictions` scores held-out predictions: accuracy, per-intent
  precision, recall and F1 with a seeded bootstrap interval for F1, the confusion matrix,
  the most confused pairs and a few misclassified examples.
* :func:`promotion_decision` says whether a candidate may replace the serving model, in
  sentences a trainer understands.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ConfusedPair",
    "ConfusionMatrix",
    "CrossValidation",
    "EvaluationReport",
    "IntentCrossValidation",
    "IntentMetrics",
    "Misclassification",
    "PromotionDecision",
    "cross_validation_summary",
    "evaluation_path_for",
    "fold_examples",
    "plain_text",
    "promotion_decision",
    "report_from_predictions",
    "split_examples",
]

REPORT_VERSION = 1
DEFAULT_HOLDOUT = 0.2
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
MOST_CONFUSED_KEPT = 10
ERRORS_KEPT = 20
# Two F1 values closer than this are equal (they are ratios of small counts).
F1_TOLERANCE = 1e-9

# Rasa's entity annotations: [text](entity), [text](entity:value), [text]{"entity": ...}.
_ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


# --------------------------------------------------------------------------- splitting


def plain_text(example: str) -> str:
    """The text of a training example without entity markup or extra whitespace."""
    return " ".join(_ANNOTATION.sub(r"\g<text>", example).split())


def _unit_hash(intent: str, text: str, salt: str = "holdout") -> float:
    """A number in [0, 1) that depends only on the intent and the example's plain text."""
    key = f"{salt}\0{intent}\0{plain_text(text)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


def split_examples(
    examples: Mapping[str, Sequence[str]], holdout: float = DEFAULT_HOLDOUT
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split each intent's examples into ``(train, test)``, stratified and stable.

    An example goes to the test side when the hash of (intent, plain text) falls below
    ``holdout``, so adding, removing or annotating one example moves no other one. Then,
    for every intent with at least two examples, each side keeps at least one: if the
    hash sent none to the test side, the example with the lowest hash goes there; if it
    sent all of them, the one with the highest hash stays in train. (Only those forced
    examples can change side when an intent's examples change.) An intent with a single
    example stays in train. Examples keep their order and their markup; intents whose
    side is empty are left out of that side.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    for intent, texts in examples.items():
        texts = list(texts)
        if not texts:
            continue
        scores = [_unit_hash(intent, text) for text in texts]
        in_test = [score < holdout for score in scores]
        if len(texts) == 1:
            in_test = [False]
        elif not any(in_test):
            in_test[min(range(len(texts)), key=scores.__getitem__)] = True
        elif all(in_test):
            in_test[max(range(len(texts)), key=scores.__getitem__)] = False
        train_side = [text for text, held in zip(texts, in_test, strict=True) if not held]
        test_side = [text for text, held in zip(texts, in_test, strict=True) if held]
        if train_side:
            train[intent] = train_side
        if test_side:
            test[intent] = test_side
    return train, test


def fold_examples(
    examples: Mapping[str, Sequence[str]], folds: int
) -> list[tuple[dict[str, list[str]], dict[str, list[str]]]]:
    """Stratified k-fold: ``folds`` pairs of ``(train, test)`` covering every example once.

    Each intent's examples are ordered by their hash and dealt to the folds in turn, so
    every fold holds a share of every intent with at least ``folds`` examples. Intents
    with a single example only ever train.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    pairs: list[tuple[dict[str, list[str]], dict[str, list[str]]]] = [
        ({}, {}) for _ in range(folds)
    ]
    for intent, texts in examples.items():
        ordered = sorted(texts, key=lambda text: _unit_hash(intent, text, salt="folds"))
        for fold, (train, test) in enumerate(pairs):
            if len(ordered) < 2:
                held, kept = [], ordered
            else:
                held = ordered[fold::folds]
                kept = [text for position, text in enumerate(ordered) if position % folds != fold]
            if held:
                test[intent] = held
            if kept:
                train[intent] = kept
    return pairs


# --------------------------------------------------------------------------- the report


@dataclasses.dataclass(frozen=True)
class IntentMetrics:
    """One intent's scores on the test set; ``f1_low``–``f1_high`` is F1's 95 % interval."""

    precision: float
    recall: float
    f1: float
    support: int
    f1_low: float
    f1_high: float


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix:
    """``counts[i][j]``: test examples of ``labels[i]`` predicted as ``labels[j]``."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]


@dataclasses.dataclass(frozen=True)
class ConfusedPair:
    """``count`` test examples of ``true`` were predicted as ``predicted``."""

    true: str
    predicted: str
    count: int


@dataclasses.dataclass(frozen=True)
class Misclassification:
    """A held-out training example the model got wrong (training data, not customer text)."""

    text: str
    true: str
    predicted: str
    confidence: float


@dataclasses.dataclass(frozen=True)
class IntentCrossValidation:
    """One intent's F1 over the cross-validation folds it was tested in."""

    f1_mean: float
    f1_std: float
    folds: int


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """Stratified k-fold cross-validation: mean F1 ± standard deviation per intent."""

    folds: int
    accuracy_mean: float
    accuracy_std: float
    intents: Mapping[str, IntentCrossValidation]


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """A model's scores on the held-out examples of the data it was trained from."""

    model: str
    created_at: str
    data_fingerprint: str
    n_test: int
    accuracy: float
    intents: Mapping[str, IntentMetrics]
    confusion: ConfusionMatrix
    most_confused: tuple[ConfusedPair, ...]
    errors: tuple[Misclassification, ...]
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 42
    cross_validation: CrossValidation | None = None

    def to_json(self) -> str:
        """The report as JSON (what the pipeline stores beside the model)."""
        data = dataclasses.asdict(self)
        data["version"] = REPORT_VERSION
        return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        """The report :meth:`to_json` wrote."""
        data = json.loads(text)
        data.pop("version", None)
        cross = data.pop("cross_validation", None)
        return cls(
            model=data["model"],
            created_at=data["created_at"],
            data_fingerprint=data["data_fingerprint"],
            n_test=int(data["n_test"]),
            accuracy=float(data["accuracy"]),
            intents={name: IntentMetrics(**m) for name, m in data["intents"].items()},
            confusion=ConfusionMatrix(
                labels=tuple(data["confusion"]["labels"]),
                counts=tuple(tuple(row) for row in data["confusion"]["counts"]),
            ),
            most_confused=tuple(ConfusedPair(**pair) for pair in data["most_confused"]),
            errors=tuple(Misclassification(**error) for error in data["errors"]),
            resamples=int(data.get("resamples", BOOTSTRAP_RESAMPLES)),
            seed=int(data.get("seed", 42)),
            cross_validation=None
            if cross is None
            else CrossValidation(
                folds=int(cross["folds"]),
                accuracy_mean=float(cross["accuracy_mean"]),
                accuracy_std=float(cross["accuracy_std"]),
                intents={
                    name: IntentCrossValidation(**scores)
                    for name, scores in cross["intents"].items()
                },
            ),
        )

    def save(self, path: Path) -> None:
        """Write the report to ``path`` atomically."""
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(self.to_json(), encoding="utf-8")
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> EvaluationReport:
        """The report saved at ``path``."""
        return cls.from_json(path.read_text(encoding="utf-8"))

    def evaluated_intents(self) -> dict[str, IntentMetrics]:
        """The intents the test set has examples of (not those only ever predicted)."""
        return {name: m for name, m in self.intents.items() if m.support > 0}


def evaluation_path_for(model_path: Path) -> Path:
    """Where a model's evaluation is kept: beside ``rapport-<fp>.tar.gz``, the file
    ``rapport-<fp>.evaluation.json``."""
    name = model_path.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    return model_path.with_name(f"{name}.evaluation.json")


def _f1_arrays(
    true_positives: np.ndarray, true_counts: np.ndarray, predicted_counts: np.ndarray
) -> np.ndarray:
    """F1 = 2·TP / (true + predicted); NaN where the intent is neither true nor predicted."""
    denominator = true_counts + predicted_counts
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2.0 * true_positives / denominator, np.nan)


def report_from_predictions(
    model: str,
    truths: Sequence[str],
    predictions: Sequence[str],
    confidences: Sequence[float],
    texts: Sequence[str],
    seed: int = 42,
    *,
    data_fingerprint: str = "",
    created_at: str | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    max_errors: int = ERRORS_KEPT,
) -> EvaluationReport:
    """Score predictions of held-out examples (parallel sequences, one item per example).

    Labels are every intent that is true or predicted (a prediction such as
    ``nlu_fallback`` counts as a miss and appears with support 0). Precision and recall
    of an intent that is never predicted, or never true, are 0. F1's interval is the 2.5th
    and 97.5th percentile of F1 over ``resamples`` bootstrap resamples of the test set
    (NumPy generator seeded with ``seed``: the same inputs give the same interval),
    widened if need be to contain F1 itself; resamples in which an intent is neither true
    nor predicted do not count for it.
    """
    n = len(truths)
    if not len(predictions) == len(confidences) == len(texts) == n:
        raise ValueError("truths, predictions, confidences and texts must be equally long")
    labels = tuple(sorted(set(truths) | set(predictions)))
    index = {label: position for position, label in enumerate(labels)}
    true_ids = np.array([index[t] for t in truths], dtype=np.int64)
    predicted_ids = np.array([index[p] for p in predictions], dtype=np.int64)

    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(counts, (true_ids, predicted_ids), 1)
    true_positives = np.diag(counts).astype(float)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)

    intervals = _bootstrap_f1(true_ids, predicted_ids, len(labels), seed, resamples)
    intents: dict[str, IntentMetrics] = {}
    for position, label in enumerate(labels):
        tp = true_positives[position]
        precision = float(tp / predicted[position]) if predicted[position] else 0.0
        recall = float(tp / support[position]) if support[position] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        low, high = intervals[position]
        low = f1 if math.isnan(low) else min(low, f1)
        high = f1 if math.isnan(high) else max(high, f1)
        intents[label] = IntentMetrics(
            precision=round(precision, 6),
            recall=round(recall, 6),
            f1=round(f1, 6),
            support=int(support[position]),
            f1_low=round(low, 6),
            f1_high=round(high, 6),
        )

    pairs = [
        ConfusedPair(labels[i], labels[j], int(counts[i, j]))
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j and counts[i, j] > 0
    ]
    pairs.sort(key=lambda pair: (-pair.count, pair.true, pair.predicted))
    errors = [
        Misclassification(text, truth, prediction, round(float(confidence), 6))
        for text, truth, prediction, confidence in zip(
            texts, truths, predictions, confidences, strict=True
        )
        if truth != prediction
    ]
    # The confident mistakes teach the most.
    errors.sort(key=lambda error: (-error.confidence, error.true, error.text))
    return EvaluationReport(
        model=model,
        created_at=created_at or datetime.datetime.now(datetime.timezone.utc).isoformat(),
        data_fingerprint=data_fingerprint,
        n_test=n,
        accuracy=round(float(true_positives.sum() / n), 6) if n else 0.0,
        intents=intents,
        confusion=ConfusionMatrix(labels, tuple(tuple(int(c) for c in row) for row in counts)),
        most_confused=tuple(pairs[:MOST_CONFUSED_KEPT]),
        errors=tuple(errors[:max_errors]),
        resamples=resamples,
        seed=seed,
    )


def _bootstrap_f1(
    true_ids: np.ndarray, predicted_ids: np.ndarray, n_labels: int, seed: int, resamples: int
) -> list[tuple[float, float]]:
    """Each label's (low, high) percentile interval of F1 over bootstrap resamples."""
    n = len(true_ids)
    if n == 0 or resamples <= 0:
        return [(math.nan, math.nan)] * n_labels
    rng = np.random.default_rng(seed)
    # How often each test example is drawn in each resample (resamples by n).
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    true_onehot = np.eye(n_labels)[true_ids]
    predicted_onehot = np.eye(n_labels)[predicted_ids]
    f1 = _f1_arrays(
        weights @ (true_onehot * predicted_onehot),
        weights @ true_onehot,
        weights @ predicted_onehot,
    )
    tail = (1.0 - CONFIDENCE_LEVEL) / 2.0 * 100.0
    intervals = []
    for label in range(n_labels):
        column = f1[:, label]
        column = column[~np.isnan(column)]
        if column.size == 0:
            intervals.append((math.nan, math.nan))
        else:
            low, high = np.percentile(column, [tail, 100.0 - tail])
            intervals.append((float(low), float(high)))
    return intervals


def cross_validation_summary(fold_reports: Sequence[EvaluationReport]) -> CrossValidation:
    """Mean and (population) standard deviation of each intent's F1 over the folds.

    An intent counts in the folds whose test side had examples of it.
    """
    per_intent: dict[str, list[float]] = {}
    for report in fold_reports:
        for name, metrics in report.evaluated_intents().items():
            per_intent.setdefault(name, []).append(metrics.f1)
    accuracies = [report.accuracy for report in fold_reports]
    return CrossValidation(
        folds=len(fold_reports),
        accuracy_mean=round(float(np.mean(accuracies)), 6) if accuracies else 0.0,
        accuracy_std=round(float(np.std(accuracies)), 6) if accuracies else 0.0,
        intents={
            name: IntentCrossValidation(
                f1_mean=round(float(np.mean(scores)), 6),
                f1_std=round(float(np.std(scores)), 6),
                folds=len(scores),
            )
            for name, scores in sorted(per_intent.items())
        },
    )


# --------------------------------------------------------------------------- promotion


@dataclasses.dataclass(frozen=True)
class PromotionDecision:
    """Whether the candidate may serve, and every reason, one sentence each."""

    allowed: bool
    reasons: tuple[str, ...]


def promotion_decision(
    candidate: EvaluationReport,
    serving: EvaluationReport | None,
    golden_failures: Sequence[str],
) -> PromotionDecision:
    """May ``candidate`` replace ``serving``?

    The rule: an intent is *evaluated* by a report when its test set has examples of it
    (support > 0). For every intent evaluated by both reports, the candidate's F1 must be
    at least the lower bound of the serving model's 95 % F1 interval
    (``candidate.f1 >= serving.f1_low``, up to 1e-9): a drop that stays within the serving
    model's own uncertainty is allowed, a drop below it blocks. Intents evaluated only by
    the candidate (new) or only by the serving model (removed, or left without test
    examples) are reported and do not block. Every golden conversation in
    ``golden_failures`` blocks. Without a serving report nothing is compared and only the
    golden conversations decide.
    """
    reasons: list[str] = []
    blocked = False
    for name in golden_failures:
        reasons.append(f"golden conversation '{name}' failed")
        blocked = True
    if serving is None:
        reasons.append(
            "the serving model has no evaluation (none serves, or it was not trained here), "
            "so there is nothing to compare the candidate with"
        )
        if not golden_failures:
            reasons.append("no golden conversation failed")
        return PromotionDecision(not blocked, tuple(reasons))

    new = candidate.evaluated_intents()
    old = serving.evaluated_intents()
    compared = sorted(set(new) & set(old))
    drops = 0
    for name in compared:
        before, after = old[name], new[name]
        if after.f1 + F1_TOLERANCE < before.f1_low:
            drops += 1
            reasons.append(
                f"F1 of {name} fell from {before.f1:.2f} to {after.f1:.2f}, "
                f"below its interval {before.f1_low:.2f}–{before.f1_high:.2f}"
            )
    blocked = blocked or drops > 0
    for name in sorted(set(new) - set(old)):
        reasons.append(
            f"{name} is new (F1 {new[name].f1:.2f}): the serving model has no score to compare"
        )
    for name in sorted(set(old) - set(new)):
        reasons.append(
            f"{name} is no longer evaluated (the serving model had F1 {old[name].f1:.2f})"
        )
    if compared and not drops:
        reasons.append(
            f"no intent's F1 fell below the serving model's interval ({len(compared)} compared)"
        )
    elif not compared:
        reasons.append("the two models share no evaluated intent to compare")
    if not golden_failures:
        reasons.append("no golden conversation failed")
    return PromotionDecision(not blocked, tuple(reasons))
