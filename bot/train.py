"""Train the assistant only when its inputs changed.

A model is named after a fingerprint of everything that shapes it (config.yml,
domain.yml, data/, our custom components and the Rasa version), so "is there a model
for this fingerprint?" answers "do we need to train?" in milliseconds, and the test
suite, `make run` and CI all share one trained model.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bot.settings import PROJECT_ROOT
from bot.settings import load as load_settings
from crm_bridge.settings import process_environment

logger = logging.getLogger(__name__)

MODEL_PREFIX = "rapport-"
MODELS_KEPT = 3


def training_inputs(root: Path = PROJECT_ROOT) -> Iterator[Path]:
    """Every file whose content changes the trained model, in a stable order."""
    yield root / "config.yml"
    yield root / "domain.yml"
    for folder in ("data", "bot/components"):
        base = root / folder
        if base.is_dir():
            yield from sorted(
                p for p in base.rglob("*") if p.is_file() and p.suffix in {".yml", ".yaml", ".py"}
            )


def fingerprint(root: Path = PROJECT_ROOT) -> str:
    """A short hash of the training inputs and the Rasa version."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"rasa=={version('rasa')}".encode())
    for path in training_inputs(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def model_path_for(models_dir: Path, root: Path = PROJECT_ROOT) -> Path:
    """Where the model for the current training inputs is (or will be) stored."""
    return models_dir / f"{MODEL_PREFIX}{fingerprint(root)}.tar.gz"


def train_if_needed(
    models_dir: Path | None = None, root: Path = PROJECT_ROOT, force: bool = False
) -> Path:
    """Return the current model, training it first if no model matches the inputs."""
    models_dir = models_dir or load_settings().models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    # One trainer at a time: parallel test workers or a second `make run` wait here
    # and then reuse the model the first one trained.
    with open(models_dir / ".train.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        target = model_path_for(models_dir, root)
        if target.exists() and not force:
            logger.info("Model is up to date: %s", target.name)
            return target
        print(f"Training {target.name} (inputs changed since the last model)...", flush=True)
        command = [
            sys.executable,
            "-m",
            "rasa",
            "train",
            "--config",
            str(root / "config.yml"),
            "--domain",
            str(root / "domain.yml"),
            "--data",
            str(root / "data"),
            "--out",
            str(models_dir),
            "--fixed-model-name",
            target.name.removesuffix(".tar.gz"),
        ]
        env = {**process_environment(), "RASA_TELEMETRY_ENABLED": "false"}
        subprocess.run(command, cwd=root, env=env, check=True)  # noqa: S603
        if not target.exists():
            raise RuntimeError(f"rasa train finished but {target} is missing")
        prune_old_models(models_dir, keep=target)
        return target


def prune_old_models(models_dir: Path, keep: Path) -> None:
    """Delete all but the newest few models so models/ does not grow without bound.

    The models the workbench's serving pointer names (the one serving and the one a
    rollback returns to) are never deleted, however old.
    """
    from bot.workbench.promotion import pinned_models

    pinned = pinned_models(models_dir)
    models = sorted(
        models_dir.glob(f"{MODEL_PREFIX}*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in models[MODELS_KEPT:]:
        if old != keep and old.name not in pinned:
            old.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m bot train [--force] [--print-path]``."""
    parser = argparse.ArgumentParser(prog="python -m bot train", description=__doc__)
    parser.add_argument("--force", action="store_true", help="train even if a model matches")
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        path = train_if_needed(args.models_dir, force=args.force)
    except subprocess.CalledProcessError as error:
        print(f"Training failed (rasa train exited with {error.returncode}).", file=sys.stderr)
        return 1
    print(path)
    return 0
