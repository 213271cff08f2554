"""A small run of the real NLU benchmark CLI (a few intents, a few epochs), so the
benchmark cannot rot. Figures are checked for sanity, never against timing goals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"


def run_benchmark(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.nlu",
            *args,
            "--intents",
            "5",
            "--per-intent",
            "40",
            "--epochs",
            "3",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "RASA_TELEMETRY_ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "tfidf-logreg" in completed.stdout and "rapport" in completed.stdout
    [report_file] = out.glob("*.json")
    report: dict = json.loads(report_file.read_text())
    report["_stdout"] = completed.stdout
    return report


@pytest.mark.skipif(not DATASETS.exists(), reason="../shared/datasets is not beside the repo")
def test_banking77_smoke(tmp_path: Path) -> None:
    report = run_benchmark(
        tmp_path,
        "--dataset",
        "banking77",
        "--train",
        str(DATASETS / "banking77" / "train.csv"),
        "--dev-split",
        "0.2",
        "--baseline",
        "rasa-default",
    )
    assert report["intents"] == 5 and report["test_examples"] > 0
    baseline, ours, default = report["results"]
    assert baseline["name"] == "tfidf-logreg" and ours["name"] == "rapport"
    assert default["name"] == "rasa-default" and "rasa-default" in report["_stdout"]
    assert baseline["accuracy"] > 0.7
    # Rasa's default pipeline runs with its own fallback (0.3, ambiguity 0.1), not ours.
    assert (default["fallback_threshold"], default["ambiguity_threshold"]) == (0.3, 0.1)
    for result in (baseline, ours, default):
        assert 0 <= result["accuracy"] <= 1 and 0 <= result["macro_f1"] <= 1
        assert result["train_seconds"] > 0 and result["parse_ms_p99"] >= result["parse_ms_p50"] > 0
        assert Path(result["confusion_picture"]).stat().st_size > 1000
    assert ours["model_mb"] > 0 and ours["peak_rss_mb"] > 100
    assert ours["vs_baseline"]["accuracy"] == pytest.approx(ours["accuracy"] / baseline["accuracy"])
    # Without out-of-scope data the sweep still shows what each threshold costs: at 0 the
    # fallback never fires (ambiguity 0), and a higher threshold can only lose accuracy.
    unguarded = ours["ambiguity_sweep"]["0.0"]
    assert unguarded[0]["accuracy"] == pytest.approx(ours["without_fallback"]["accuracy"])
    accuracies = [row["accuracy"] for row in unguarded]
    assert accuracies == sorted(accuracies, reverse=True)
    assert "ambiguity threshold 0.1" in report["_stdout"] and report["machine"]["cpu"]


@pytest.mark.skipif(not DATASETS.exists(), reason="../shared/datasets is not beside the repo")
def test_clinc150_smoke_reports_out_of_scope(tmp_path: Path) -> None:
    data = str(DATASETS / "clinc150" / "train_val.json")
    report = run_benchmark(tmp_path, "--dataset", "clinc150", "--train", data, "--test", data)
    assert report["test_source"].endswith("[val + oos_val]")
    for result in report["results"]:
        assert 0 <= result["in_scope_accuracy"] <= 1 and 0 <= result["oos_recall"] <= 1
    ours = report["results"][1]
    rows = ours["ambiguity_sweep"]["0.1"]
    thresholds = [row["threshold"] for row in ours["threshold_sweep"]]
    assert [row["threshold"] for row in rows] == thresholds
    # Raising the threshold only sends more messages to the fallback.
    recalls = [row["oos_recall"] for row in rows]
    assert recalls == sorted(recalls)
    # The threshold rule is applied to the sweep and printed.
    assert ours["oos_recall_goal"] == 0.85 and "threshold_choice" in ours
    assert "lowest threshold with OOS recall >= 85%" in report["_stdout"]
    choice = ours["threshold_choice"]
    if choice is None:  # a 3-epoch model may reach no setting; then it must say so
        assert "no setting reaches it" in report["_stdout"]
    else:
        assert choice["oos_recall"] >= 0.85 and choice in [
            {"ambiguity_threshold": float(a), **row}
            for a, sweep in ours["ambiguity_sweep"].items()
            for row in sweep
        ]
