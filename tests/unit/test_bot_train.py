"""The training fingerprint: same inputs, same model; any input change, a new model."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.settings import PROJECT_ROOT
from bot.train import fingerprint, model_path_for, prune_old_models


def _copy_project_inputs(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "config.yml").write_text("language: en\n")
    (root / "domain.yml").write_text("version: '3.1'\nintents: [greet]\n")
    (root / "data" / "nlu").mkdir(parents=True)
    (root / "data" / "nlu" / "basics.yml").write_text("version: '3.1'\nnlu: []\n")
    return root


def test_fingerprint_is_stable_and_sensitive(tmp_path: Path) -> None:
    root = _copy_project_inputs(tmp_path)
    first = fingerprint(root)
    assert fingerprint(root) == first

    (root / "data" / "nlu" / "basics.yml").write_text("version: '3.1'\nnlu: [] # edited\n")
    assert fingerprint(root) != first

    (root / "data" / "nlu" / "basics.yml").write_text("version: '3.1'\nnlu: []\n")
    assert fingerprint(root) == first
    (root / "data" / "nlu" / "notes.txt").write_text("not a training input")
    assert fingerprint(root) == first
    shutil.copy(root / "data" / "nlu" / "basics.yml", root / "data" / "nlu" / "more.yml")
    assert fingerprint(root) != first


def test_model_path_is_named_after_the_fingerprint(tmp_path: Path) -> None:
    path = model_path_for(tmp_path, PROJECT_ROOT)
    assert path.parent == tmp_path
    assert path.name == f"rapport-{fingerprint(PROJECT_ROOT)}.tar.gz"


def test_prune_keeps_the_newest_models(tmp_path: Path) -> None:
    import os

    paths = []
    for index in range(5):
        path = tmp_path / f"rapport-{index:016d}.tar.gz"
        path.write_text("model")
        os.utime(path, (1_000_000 + index, 1_000_000 + index))
        paths.append(path)
    prune_old_models(tmp_path, keep=paths[-1])
    assert sorted(p.name for p in tmp_path.glob("*.tar.gz")) == [p.name for p in paths[2:]]
