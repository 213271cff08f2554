"""all-MiniLM-L6-v2 as a PyTorch module: fine-tuned at training time, and run with
compact pre-packed weights at serving time.

The module mirrors ``minilm.py``'s NumPy forward pass (a unit test holds them to 1e-4)
under the checkpoint's safetensors names, so weights move between the two freely.

Why compact weights: a lone message is a ~15-row matrix product against 42 MB of float32
layer weights, so it is bound by reading those weights, not by arithmetic. PyTorch's
dynamic quantisation stores them pre-packed for fbgemm in fewer bytes. Measured on the
2-core AVX2 development machine, one BANKING77 message at a time (500 messages, tuned
encoder; p50 / p99 ms and the mean cosine to the float32 embedding):

    NumPy float32 (before)                           21.7 / 44.1   1.000
    PyTorch float32                                  16.4 / 31.1   1.000
    every matrix float16                             11.9 / 28.2   1.000
    every matrix int8 (per output channel)            9.8 / 20.8   0.981
    int8 feed-forward input only, float16 the rest    9.2 / 19.2   0.992
    int8 but the feed-forward output, that float16    8.6 / 18.2   0.990   <- this

The feed-forward output matrix, fed by GELU's long tail, is the least tolerant of int8;
the others lose little. fbgemm's float16 path is slow (twice int8's time per weight), so
only that matrix keeps it. int8 activations are quantised per call, so in a batch a
message's features would move with the rest of it; ``MiniLM`` therefore runs the
quantised encoder one message per call, in training as the server does.

Nothing here imports torch at import time.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.components.minilm_checkpoint import HEADS, HIDDEN, LAYERS

if TYPE_CHECKING:
    import torch

FROZEN = "embeddings.word_embeddings.weight"
# Names inside one BERT layer, ours -> the checkpoint's.
LAYER_PARTS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_out": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "output_norm": "output.LayerNorm",
}
DROPOUT = 0.1
# The one matrix per layer served as float16, not int8 (see the module docstring).
FLOAT16_PART = ".output"


def build_encoder(weights: dict[str, np.ndarray], frozen_layers: int = 0) -> Any:
    """The trainable torch encoder (an ``nn.Module``) initialised from checkpoint arrays;
    called with ``(ids, mask)`` it returns mean-pooled last-layer states, and
    ``hidden_states(ids, mask)`` gives every layer's token states. The word embeddings
    are always frozen; ``frozen_layers`` > 0 also freezes the rest of the embedding
    block and that many layers from the bottom."""
    encoder = _module_classes()[1](weights)
    if frozen_layers:
        for module in [encoder.positions, encoder.types, encoder.norm]:
            module.requires_grad_(False)
        for layer in encoder.layers[:frozen_layers]:
            layer.requires_grad_(False)
    return encoder


def quantized_encoder(weights: dict[str, np.ndarray]) -> Any:
    """``build_encoder`` in evaluation mode for serving: each layer's feed-forward output
    matrix float16 (computed in float32), every other matrix int8 (per output channel,
    activations quantised per call)."""
    import torch
    from torch.ao.quantization import float16_dynamic_qconfig, per_channel_dynamic_qconfig

    encoder = build_encoder(weights).eval()
    names = [n for n, m in encoder.named_modules() if isinstance(m, torch.nn.Linear)]
    int8 = {n for n in names if not n.endswith(FLOAT16_PART)}
    with warnings.catch_warnings():
        # torch 2.13 points eager-mode quantisation users at torchao; the API is pinned
        # with torch (requirements-training.txt) and tested here.
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            encoder, dict.fromkeys(int8, per_channel_dynamic_qconfig), torch.qint8, inplace=True
        )
        torch.ao.quantization.quantize_dynamic(
            encoder,
            dict.fromkeys(set(names) - int8, float16_dynamic_qconfig),
            torch.float16,
            inplace=True,
        )
    return encoder


def tensors(tokenizer: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-piece ids and the padding mask for ``texts`` (padded to the longest)."""
    import torch

    # The tokenizer truncates as it does at inference (tokenizer), so training
    # sees exactly the word pieces the server will.
    encodings = tokenizer.encode_batch(list(texts))
    width = max(len(e.ids) for e in encodings)
    ids = torch.zeros(len(texts), width, dtype=torch.long)
    mask = torch.zeros(len(texts), width)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
        mask[row, : len(encoding.ids)] = 1.0
    return ids, mask


def _module_classes() -> tuple[type, type]:
    """The torch modules, defined on first use so importing this file needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Linear(HIDDEN, HIDDEN)
            self.key = nn.Linear(HIDDEN, HIDDEN)
            self.value = nn.Linear(HIDDEN, HIDDEN)
            self.attention_out = nn.Linear(HIDDEN, HIDDEN)
            self.intermediate = nn.Linear(HIDDEN, 4 * HIDDEN)
            self.output = nn.Linear(4 * HIDDEN, HIDDEN)
            self.attention_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
            self.output_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
            self.dropout = nn.Dropout(DROPOUT)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            batch, width, _ = x.shape

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, width, HEADS, -1).transpose(1, 2)

            attended = F.scaled_dot_product_attention(
                heads(self.query(x)),
                heads(self.key(x)),
                heads(self.value(x)),
                attn_mask=bias,
                dropout_p=DROPOUT if self.training else 0.0,
            )
            attended = attended.transpose(1, 2).reshape(batch, width, HIDDEN)
            x = self.attention_norm(x + self.dropout(self.attention_out(attended)))
            inner = F.gelu(self.intermediate(x))
            return self.output_norm(x + self.dropout(self.output(inner)))

    class Encoder(nn.Module):
        def __init__(self, weights: dict[str, np.ndarray]) -> None:
            super().__init__()
            positions, _ = weights["embeddings.position_embeddings.weight"].shape
            words = np.asarray(weights[FROZEN], dtype=np.float32).copy()
            self.words = nn.Embedding.from_pretrained(torch.from_numpy(words))
            self.positions = nn.Embedding(int(positions), HIDDEN)
            self.types = nn.Embedding(2, HIDDEN)
            self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)
            self.layers = nn.ModuleList([Layer() for _ in range(LAYERS)])
            self.dropout = nn.Dropout(DROPOUT)
            own = {
                k: torch.from_numpy(np.asarray(weights[v], dtype=np.float32).copy())
                for k, v in _name_map().items()
            }
            self.load_state_dict({**own, "words.weight": self.words.weight}, strict=True)

        def hidden_states(
            self, ids: torch.Tensor, mask: torch.Tensor, last: int = LAYERS
        ) -> list[torch.Tensor]:
            """Token states of layers 0 (embeddings) to ``last``."""
            x = self.words(ids) + self.positions.weight[: ids.shape[1]] + self.types.weight[0]
            x = self.dropout(self.norm(x))
            # Padding gets a large negative score so no token attends to it.
            bias = ((1.0 - mask) * -1e4)[:, None, None, :]
            states = [x]
            for layer in self.layers[:last]:
                x = layer(x, bias)
                states.append(x)
            return states

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            weights = mask[..., None]
            return (self.hidden_states(ids, mask)[-1] * weights).sum(1) / weights.sum(1)

        def export(self) -> dict[str, np.ndarray]:
            state = self.state_dict()
            return {
                theirs: state[ours].detach().float().numpy().copy()
                for ours, theirs in _name_map().items()
            }

    return Layer, Encoder


def _name_map() -> dict[str, str]:
    """Our module's parameter names -> the checkpoint's (every trainable weight)."""
    names = {
        "positions.weight": "embeddings.position_embeddings.weight",
        "types.weight": "embeddings.token_type_embeddings.weight",
        "norm.weight": "embeddings.LayerNorm.weight",
        "norm.bias": "embeddings.LayerNorm.bias",
    }
    for n in range(LAYERS):
        for ours, theirs in LAYER_PARTS.items():
            for part in ("weight", "bias"):
                names[f"layers.{n}.{ours}.{part}"] = f"encoder.layer.{n}.{theirs}.{part}"
    return names
