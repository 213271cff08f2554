"""The benchmark reads the datasets' official formats (the test splits are not in
shared/, so these files are written here in the same shapes) and refuses others clearly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.nlu.__main__ import main, print_sweep, unknown_intents_warning
from bench.nlu.datasets import OOS, Split, load, stratified_split

# The official BANKING77 test.csv: a header, then text,category rows (quoted when the
# text has a comma).
BANKING77_TEST = (
    "text,category\n"
    "How do I locate my card?,card_arrival\n"
    '"I still have not received my new card, I ordered over a week ago.",card_arrival\n'
    "Can I get my money back?,request_refund\n"
)


def clinc150_file(folder: Path, parts: tuple[str, ...]) -> Path:
    """A CLINC150 JSON file (like data_full.json) with the given parts."""
    examples = {
        "train": [["what is my balance", "balance"], ["set an alarm", "alarm"]],
        "val": [["how much money do i have", "balance"]],
        "test": [["wake me at six", "alarm"], ["what's in my account", "balance"]],
        "oos_train": [["how tall is everest", "oos"]],
        "oos_val": [["who won the game", "oos"]],
        "oos_test": [["what is the meaning of life", "oos"]],
    }
    path = folder / "clinc.json"
    path.write_text(json.dumps({part: examples[part] for part in parts}))
    return path


def test_banking77_official_test_csv(tmp_path: Path) -> None:
    path = tmp_path / "test.csv"
    path.write_text(BANKING77_TEST)
    split, source = load("banking77", path, "test")
    assert source == str(path)
    assert split.labels == ["card_arrival", "card_arrival", "request_refund"]
    assert split.texts[1] == "I still have not received my new card, I ordered over a week ago."


def test_clinc150_official_file_uses_test_and_oos_test(tmp_path: Path) -> None:
    path = clinc150_file(tmp_path, ("train", "val", "test", "oos_train", "oos_val", "oos_test"))
    train, train_source = load("clinc150", path, "train")
    test, test_source = load("clinc150", path, "test")
    assert train.labels == ["balance", "alarm", OOS]
    assert train_source.endswith("[train + oos_train]")
    assert test.texts == ["wake me at six", "what's in my account", "what is the meaning of life"]
    assert test.labels == ["alarm", "balance", OOS] and test_source.endswith("[test + oos_test]")


def test_clinc150_without_test_parts_is_scored_on_val(tmp_path: Path) -> None:
    path = clinc150_file(tmp_path, ("train", "val", "oos_train", "oos_val"))
    test, source = load("clinc150", path, "test")
    assert test.labels == ["balance", OOS] and source.endswith("[val + oos_val]")


@pytest.mark.parametrize(
    ("dataset", "content", "message"),
    [
        ("banking77", "sentence,label\nhello,greet\n", "lacks category, text"),
        ("banking77", "text,category\n", "has no rows"),
        ("clinc150", "text,category\nhello,greet\n", "is not a CLINC150 JSON file"),
        ("clinc150", "[1, 2]", "expected an object of parts"),
        ("clinc150", '{"other": []}', "has none of the parts"),
    ],
)
def test_wrong_files_are_refused_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str, content: str, message: str
) -> None:
    path = tmp_path / "data"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load(dataset, path, "train")
    # The command line says so in one line and exits 2, before any training.
    assert main(["--dataset", dataset, "--train", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bench.nlu: cannot read the data:") and message in error
    assert not (tmp_path / "out").exists()


def test_missing_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.csv"
    assert main(["--dataset", "banking77", "--train", str(missing)]) == 2
    assert "nowhere.csv" in capsys.readouterr().err


def test_test_intents_unknown_to_training_are_warned_about() -> None:
    train = Split(["a", "b"], ["card_arrival", "refund"])
    assert unknown_intents_warning(train, Split(["c"], ["refund"])) is None
    warning = unknown_intents_warning(train, Split(["c", "d", "e"], ["refund", "alarm", "alarm"]))
    assert warning is not None and "2 of 3 test examples" in warning and "alarm" in warning


def test_stratified_hold_out_is_per_intent_disjoint_and_seeded() -> None:
    labels = ["a"] * 50 + ["b"] * 10 + ["c"] * 1
    data = Split([f"text {i}" for i in range(len(labels))], labels)
    train, test = stratified_split(data, 0.2, seed=0)
    # An intent with a single example stays in training: it could never be predicted.
    assert Counter(test.labels) == {"a": 10, "b": 2} and "c" in train.labels
    assert set(train.texts).isdisjoint(test.texts) and len(train) + len(test) == len(data)
    assert stratified_split(data, 0.2, seed=0) == (train, test)
    assert stratified_split(data, 0.2, seed=1)[1] != test


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--oos-recall-goal", "85"),
        ("--oos-recall-goal", "high"),
        ("--dev-split", "1"),
        ("--dev-split", "0"),
    ],
)
def test_fractions_outside_0_to_1_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    # A recall goal of 85 (a percentage) could never be reached and would silently report
    # "no setting reaches it"; a hold-out of all of train would leave nothing to train on.
    path = tmp_path / "train.csv"
    path.write_text(BANKING77_TEST)
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "banking77", "--train", str(path), option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_sweep_printout_shows_the_configured_threshold_off_the_coarse_grid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"threshold": t / 100, "accuracy": 0.9} for t in range(0, 11)]
    print_sweep(
        {
            "name": "ours",
            "fallback_threshold": 0.03,
            "ambiguity_threshold": 0.0,
            "threshold_sweep": rows,
        }
    )
    printed = [line.split(":")[0].strip() for line in capsys.readouterr().out.splitlines()[1:]]
    assert printed == ["threshold 0.00", "threshold 0.03", "threshold 0.05", "threshold 0.10"]
