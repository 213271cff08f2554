"""Scores for intent classification, including out-of-scope detection."""

from __future__ import annotations

from pathlib import Path

from bench.nlu.datasets import OOS

FALLBACK = "nlu_fallback"


def scores(gold: list[str], predicted: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1; with out-of-scope examples also in-scope accuracy and
    out-of-scope recall (a fallback or an ``oos`` prediction counts as out of scope)."""
    from sklearn.metrics import accuracy_score, f1_score

    normalised = [OOS if p in {FALLBACK, OOS} else p for p in predicted]
    result = {
        "accuracy": float(accuracy_score(gold, normalised)),
        "macro_f1": float(f1_score(gold, normalised, average="macro", zero_division=0)),
    }
    in_scope = [(g, p) for g, p in zip(gold, normalised, strict=False) if g != OOS]
    out_scope = [(g, p) for g, p in zip(gold, normalised, strict=False) if g == OOS]
    if out_scope:
        result["in_scope_accuracy"] = sum(g == p for g, p in in_scope) / max(1, len(in_scope))
        result["oos_recall"] = sum(p == OOS for _, p in out_scope) / len(out_scope)
    return result


def threshold_sweep(
    gold: list[str],
    top: list[tuple[str, float, float]],
    thresholds: list[float],
    ambiguity: float = 0.0,
) -> list[dict[str, float]]:
    """In-scope accuracy and out-of-scope recall if the fallback fired at each threshold,
    from each message's best in-scope-or-``oos`` intent, its confidence and the runner-up's
    confidence (how the FallbackClassifier threshold is chosen on a validation split).
    Like the FallbackClassifier, it also fires when the best two are closer than
    ``ambiguity`` (its ``ambiguity_threshold``)."""
    rows = []
    for threshold in thresholds:
        predicted = [
            OOS if confidence < threshold or confidence - second < ambiguity else name
            for name, confidence, second in top
        ]
        rows.append({"threshold": threshold, **scores(gold, predicted)})
    return rows


def choose_thresholds(
    sweeps: dict[str, list[dict[str, float]]], oos_recall_goal: float
) -> dict[str, float] | None:
    """The README's rule for the FallbackClassifier, applied to ``sweeps`` (ambiguity
    threshold -> threshold sweep) on a validation split with out-of-scope examples: for
    each ambiguity threshold the lowest threshold whose OOS recall reaches the goal, then
    of those the one with the best in-scope accuracy. None when no setting reaches it."""
    candidates = []
    for ambiguity, rows in sweeps.items():
        reaching = [row for row in rows if row.get("oos_recall", 0.0) >= oos_recall_goal - 1e-9]
        if reaching:
            lowest = min(reaching, key=lambda row: row["threshold"])
            candidates.append({"ambiguity_threshold": float(ambiguity), **lowest})
    if not candidates:
        return None
    # Ties go to the smaller ambiguity threshold (the FallbackClassifier's simpler setting).
    return max(candidates, key=lambda row: (row["in_scope_accuracy"], -row["ambiguity_threshold"]))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of the values, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def save_confusion_picture(gold: list[str], predicted: list[str], path: Path, title: str) -> None:
    """A confusion matrix image (labels sorted; large label sets drawn without ticks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(gold) | set(predicted))
    matrix = confusion_matrix(gold, predicted, labels=labels, normalize="true")
    size = 6 if len(labels) <= 20 else 12
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    axis.set_title(title)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(labels) <= 40:
        axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        axis.set_yticks(range(len(labels)), labels, fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
