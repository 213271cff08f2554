"""``python -m bench.nlu``: intent-classification benchmark of a Rasa NLU pipeline
against a TF-IDF + logistic-regression baseline on the same split and machine.

Examples:
  python -m bench.nlu --dataset banking77 --train ../shared/datasets/banking77/train.csv \\
      --test path/to/test.csv
  python -m bench.nlu --dataset banking77 --train ../shared/datasets/banking77/train.csv \\
      --dev-split 0.2                       # no test file: hold out 20 % of train
  python -m bench.nlu --dataset clinc150 --train ../shared/datasets/clinc150/train_val.json \\
      --test ../shared/datasets/clinc150/train_val.json   # val + oos_val when no test part
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.nlu.baseline import run_tfidf_baseline
from bench.nlu.datasets import Split, load, stratified_split, subset
from bench.nlu.metrics import save_confusion_picture

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RATIO_KEYS = (
    "accuracy",
    "macro_f1",
    "in_scope_accuracy",
    "oos_recall",
    "train_seconds",
    "parse_ms_p50",
    "parse_ms_p99",
)


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (not a percentage)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (0.85, not 85)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nlu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, choices=["banking77", "clinc150"])
    parser.add_argument("--train", required=True, type=Path)
    parser.add_argument("--test", type=Path, help="official test file (or val); see --dev-split")
    parser.add_argument(
        "--dev-split",
        type=fraction,
        default=None,
        help="hold out this fraction of --train instead of a test file",
    )
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=["rasa-default"],
        help="also run Rasa's default pipeline (slow: over an hour on BANKING77)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="override every component's epochs, fine-tuning's included (smoke runs)",
    )
    parser.add_argument("--intents", type=int, help="use only the first N intents (smoke runs)")
    parser.add_argument("--per-intent", type=int, default=1000, help="with --intents")
    parser.add_argument(
        "--oos-recall-goal",
        type=fraction,
        default=0.85,
        help="with out-of-scope data: choose the fallback thresholds that reach this recall",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results")
    return parser


def load_splits(args: argparse.Namespace) -> tuple[Split, Split, str]:
    train, _ = load(args.dataset, args.train, "train")
    if args.test is not None:
        test, source = load(args.dataset, args.test, "test")
    else:
        fraction = args.dev_split if args.dev_split is not None else 0.2
        train, test = stratified_split(train, fraction, args.seed)
        source = f"{fraction:.0%} stratified hold-out of {args.train} (seed {args.seed})"
    if args.intents:
        train = subset(train, args.intents, args.per_intent, args.seed)
        keep = set(train.labels)
        test = (
            Split(
                *map(
                    list,
                    zip(
                        *[
                            (t, label)
                            for t, label in zip(test.texts, test.labels, strict=False)
                            if label in keep
                        ],
                        strict=False,
                    ),
                )
            )
            if test.texts
            else test
        )
    return train, test, source


def unknown_intents_warning(train: Split, test: Split) -> str | None:
    """A warning when test examples carry intents the training data lacks (usually a
    wrong file or dataset name): they can only count as errors."""
    unknown = sorted(set(test.labels) - set(train.labels))
    if not unknown:
        return None
    count = sum(label in unknown for label in test.labels)
    shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    return (
        f"warning: {count} of {len(test)} test examples have intents the training data "
        f"lacks ({shown}); they can only count as errors"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table and write ``<out>/<dataset>.json`` and a picture."""
    args = build_parser().parse_args(argv)
    try:
        train, test, source = load_splits(args)
    except (OSError, ValueError, KeyError) as error:
        print(f"bench.nlu: cannot read the data: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"{args.dataset}: {len(train)} training and {len(test)} test examples "
        f"({len(set(train.labels))} intents); test = {source}",
        flush=True,
    )
    warning = unknown_intents_warning(train, test)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    from bench.nlu.rasa_pipeline import run_rasa_pipeline

    results: list[dict[str, Any]] = [run_tfidf_baseline(train, test, args.seed)]
    goal = args.oos_recall_goal
    results.append(run_rasa_pipeline(train, test, args.config, args.epochs, "rapport", goal))
    if "rasa-default" in args.baseline:
        default = PROJECT_ROOT / "bench" / "nlu" / "rasa_default_config.yml"
        results.append(run_rasa_pipeline(train, test, default, args.epochs, "rasa-default", goal))

    baseline = results[0]
    for result in results:
        result["vs_baseline"] = {
            key: result[key] / baseline[key]
            for key in RATIO_KEYS
            if key in result and baseline.get(key)
        }
        picture = args.out / f"{args.dataset}-{result['name']}-confusion.png"
        save_confusion_picture(
            test.labels, result.pop("predictions"), picture, f"{args.dataset}: {result['name']}"
        )
        result["confusion_picture"] = str(picture)

    report = {
        "dataset": args.dataset,
        "train_examples": len(train),
        "test_examples": len(test),
        "intents": len(set(train.labels)),
        "test_source": source,
        "seed": args.seed,
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "cpu": _cpu_model()},
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    path = args.out / f"{args.dataset}.json"
    path.write_text(json.dumps(report, indent=2))
    print_table(results)
    for result in results:
        if "without_fallback" in result:
            plain = result["without_fallback"]
            print(
                f"{result['name']} without the fallback: accuracy {plain['accuracy']:.4f}, "
                f"macro-F1 {plain['macro_f1']:.4f}"
            )
        if "threshold_sweep" in result:
            print_sweep(result)
    print(f"written: {path}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


# CPU features that change our figures: wide vectors and VNNI speed the int8 encoder,
# bfloat16 (and AMX's bfloat16 tiles) the fine-tuning, which also makes its weights differ.
CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "VNNI",
    "avx512_bf16": "bfloat16",
    "amx_bf16": "AMX",
}


def _cpu_model() -> str:
    """The CPU's name and the features above that it has, since times and tuned weights
    differ between machines (virtual machines often report a generic name)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    lines = info.splitlines()
    name = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        "unknown",
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    )
    features = [label for flag, label in CPU_FEATURES.items() if flag in flags]
    return f"{name} ({', '.join(features)})" if features else name


def print_table(results: list[dict[str, Any]]) -> None:
    columns = [
        ("accuracy", "acc"),
        ("macro_f1", "F1"),
        ("in_scope_accuracy", "in-scope"),
        ("oos_recall", "oos rec"),
        ("train_seconds", "train s"),
        ("parse_ms_p50", "p50 ms"),
        ("parse_ms_p99", "p99 ms"),
    ]
    print(f"{'pipeline':<16}" + "".join(f"{label:>10}" for _, label in columns))
    for result in results:
        cells = "".join(
            f"{result[key]:>10.3f}" if key in result else f"{'-':>10}" for key, _ in columns
        )
        print(f"{result['name']:<16}{cells}")


def print_sweep(result: dict[str, Any]) -> None:
    """Accuracy (and, with out-of-scope data, in-scope accuracy / OOS recall) per fallback
    threshold at the configured ambiguity threshold, then the same grid for other
    ambiguity thresholds (choose both here, on a validation split)."""
    print(
        f"{result['name']}: fallback threshold sweep (configured: "
        f"{result['fallback_threshold']}; ambiguity threshold {result['ambiguity_threshold']} "
        "applied throughout)"
    )
    configured = result["fallback_threshold"]
    for row in _printed_rows(result["threshold_sweep"], configured):
        print(f"  threshold {row['threshold']:.2f}: {_sweep_cells(row)}")
    for ambiguity, rows in result.get("ambiguity_sweep", {}).items():
        print(f"  ambiguity threshold {ambiguity}:")
        for row in _printed_rows(rows, configured):
            print(f"    threshold {row['threshold']:.2f}: {_sweep_cells(row)}")
    if "oos_recall_goal" in result:
        goal = result["oos_recall_goal"]
        choice = result.get("threshold_choice")
        rule = f"lowest threshold with OOS recall >= {goal:.0%}, then best in-scope accuracy"
        if choice is None:
            print(f"  {rule}: no setting reaches it")
        else:
            print(
                f"  {rule}: threshold {choice['threshold']:.2f}, ambiguity threshold "
                f"{choice['ambiguity_threshold']} ({_sweep_cells(choice)})"
            )


def _printed_rows(rows: list[dict[str, float]], configured: float | None) -> list[dict[str, float]]:
    """The rows on the 0.05 grid, and the configured threshold's row wherever it lies
    (the JSON keeps the whole 0.01 grid)."""
    return [
        row
        for row in rows
        if round(row["threshold"] * 100) % 5 == 0 or row["threshold"] == configured
    ]


def _sweep_cells(row: dict[str, float]) -> str:
    cells = f"accuracy {row['accuracy']:.4f}"
    if "oos_recall" in row:
        scope = f"in-scope {row['in_scope_accuracy']:.4f}  oos recall {row['oos_recall']:.4f}"
        cells = f"{scope}  {cells}"
    return cells


if __name__ == "__main__":
    sys.exit(main())
