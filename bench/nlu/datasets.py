"""Public intent datasets in their official formats, and honest development splits.

BANKING77: CSV with ``text,category``. CLINC150: JSON with lists of ``[text, label]``
under ``train``/``val``/``test`` and ``oos_train``/``oos_val``/``oos_test``; the
out-of-scope examples get the label ``oos``.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

OOS = "oos"


@dataclass(frozen=True)
class Split:
    """Labelled examples: parallel lists of texts and intent labels."""

    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def load_banking77(path: Path) -> Split:
    """A BANKING77 CSV (``train.csv`` or the official ``test.csv``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path} is not a BANKING77 CSV: its header lacks {', '.join(sorted(missing))} "
                "(expected text,category)"
            )
        rows = [(row["text"].strip(), row["category"].strip()) for row in reader]
    if not rows:
        raise ValueError(f"{path} has no rows with text,category")
    return Split([text for text, _ in rows], [label for _, label in rows])


def load_clinc150(path: Path, parts: tuple[str, ...]) -> Split:
    """The named parts of a CLINC150 JSON file; ``oos_*`` parts are labelled ``oos``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a CLINC150 JSON file: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CLINC150 JSON file (expected an object of parts)")
    texts: list[str] = []
    labels: list[str] = []
    for part in parts:
        if part not in data:
            continue
        for text, label in data[part]:
            texts.append(text)
            labels.append(OOS if part.startswith("oos") else label)
    if not texts:
        raise ValueError(f"{path} has none of the parts {', '.join(parts)}")
    return Split(texts, labels)


def load(dataset: str, path: Path, role: str) -> tuple[Split, str]:
    """Load ``path`` as the ``role`` ("train" or "test") of ``dataset``; also say what
    exactly was used."""
    if dataset == "banking77":
        return load_banking77(path), str(path)
    if dataset == "clinc150":
        parts = ("train", "oos_train") if role == "train" else ("test", "oos_test")
        try:
            return load_clinc150(path, parts), f"{path} [{' + '.join(parts)}]"
        except ValueError:
            # The shared train_val.json has no test parts: evaluate on val (development).
            return load_clinc150(path, ("val", "oos_val")), f"{path} [val + oos_val]"
    raise ValueError(f"unknown dataset {dataset!r} (banking77 or clinc150)")


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out ``fraction`` of each label (seeded) as a development test set."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(split.labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    held: set[int] = set()
    for indices in by_label.values():
        shuffled = indices[:]
        rng.shuffle(shuffled)
        # At least one example of each intent is held out, and at least one kept for
        # training: an intent seen only at test time could never be predicted.
        count = min(len(shuffled) - 1, max(1, round(len(shuffled) * fraction)))
        held.update(shuffled[:count])
    keep = [i for i in range(len(split)) if i not in held]
    test = sorted(held)
    return (
        Split([split.texts[i] for i in keep], [split.labels[i] for i in keep]),
        Split([split.texts[i] for i in test], [split.labels[i] for i in test]),
    )


def subset(split: Split, intents: int, per_intent: int, seed: int) -> Split:
    """The first ``intents`` labels (sorted; plus ``oos`` when present) with at most
    ``per_intent`` examples each."""
    chosen = sorted(set(split.labels) - {OOS})[:intents]
    if OOS in split.labels:
        chosen.append(OOS)
    rng = random.Random(seed)
    indices = list(range(len(split)))
    rng.shuffle(indices)
    counts: dict[str, int] = defaultdict(int)
    keep = []
    for i in indices:
        label = split.labels[i]
        if label in chosen and counts[label] < per_intent:
            counts[label] += 1
            keep.append(i)
    keep.sort()
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep])
