"""Fine-tuning all-MiniLM-L6-v2 on the assistant's own intents (PyTorch; training only).

A frozen encoder places sentences by general paraphrase similarity; a few epochs on the
intent labels pull each intent's examples together and the intents apart. On the
development splits (README "NLU benchmark") that moved BANKING77 from 93.5 % to 94.x %
and CLINC150's in-scope accuracy at 85 % out-of-scope recall from 94 % to 96.7 %.

The training objective is a cosine-softmax head over the mean-pooled last layer (scale
20), the same pooling the featurizer reads, so the head's geometry is what the
classifier later sees. The word-embedding matrix stays frozen: it is 11.7 M of the 22.7 M
weights, updating it doubles the step time, and it would have to be stored with every
model. The tuned weights come back as NumPy arrays under the safetensors names, so the
server runs them with ``minilm.py``'s NumPy forward pass and never imports torch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.components import minilm

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
HEAD_SCALE = 20.0
# The fresh head starts at zero knowledge; it learns this many times faster than the
# pretrained encoder so the encoder's first steps follow a sensible gradient.
HEAD_LR_FACTOR = 20.0
WARMUP_FRACTION = 0.06
DROPOUT = 0.1


def fine_tune(
    weights: dict[str, np.ndarray],
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Train the encoder on ``texts``/``labels`` and return its changed weights.

    ``weights`` are the checkpoint's arrays (safetensors names, untransposed);
    ``tokenizer`` is a ``tokenizers.Tokenizer``. The result holds every weight except
    the frozen word embeddings, float32, under the same names. Seeded: the same inputs
    on the same machine give the same weights.
    """
    import torch
    import torch.nn.functional as F

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("fine-tuning needs examples of two intents or more")
    targets = torch.tensor([classes.index(label) for label in labels])
    rng = random.Random(seed)
    # Our own RNG stream, so training does not disturb (or depend on) global torch state.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = build_encoder(weights)
        head = torch.nn.Linear(minilm.HIDDEN, len(classes), bias=False)
        groups: list[dict[str, Any]] = [
            {"params": [p for p in encoder.parameters() if p.requires_grad]},
            {"params": head.parameters(), "lr": learning_rate * HEAD_LR_FACTOR},
        ]
        optimizer = torch.optim.AdamW(
            groups,
            lr=learning_rate,
            weight_decay=0.01,
        )
        steps = epochs * math.ceil(len(texts) / batch_size)
        warmup = max(1, int(WARMUP_FRACTION * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, (steps - step) / (steps - warmup + 1))
        )
        bf16 = _bf16_supported()
        encoder.train()
        for _ in range(epochs):
            for batch in _length_bucketed_batches(texts, batch_size, rng):
                ids, mask = _tensors(tokenizer, [texts[i] for i in batch])
                # bfloat16 matmuls where the CPU has them (about twice as fast here);
                # the loss and the optimiser stay in float32.
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    pooled = encoder(ids, mask).float()
                centroids = F.normalize(head.weight, dim=-1)
                logits = HEAD_SCALE * F.normalize(pooled, dim=-1) @ centroids.T
                loss = F.cross_entropy(logits, targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        return encoder.export()


def _bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _length_bucketed_batches(
    texts: Sequence[str], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffled batches of similar-length texts (little padding), in shuffled order."""
    order = list(range(len(texts)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(texts[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _tensors(tokenizer: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    # The tokenizer truncates as it does at inference (minilm.tokenizer), so training
    # sees exactly the word pieces the server will.
    encodings = tokenizer.encode_batch(texts)
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
            self.query = nn.Linear(minilm.HIDDEN, minilm.HIDDEN)
            self.key = nn.Linear(minilm.HIDDEN, minilm.HIDDEN)
            self.value = nn.Linear(minilm.HIDDEN, minilm.HIDDEN)
            self.attention_out = nn.Linear(minilm.HIDDEN, minilm.HIDDEN)
            self.intermediate = nn.Linear(minilm.HIDDEN, 4 * minilm.HIDDEN)
            self.output = nn.Linear(4 * minilm.HIDDEN, minilm.HIDDEN)
            self.attention_norm = nn.LayerNorm(minilm.HIDDEN, eps=1e-12)
            self.output_norm = nn.LayerNorm(minilm.HIDDEN, eps=1e-12)
            self.dropout = nn.Dropout(DROPOUT)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            batch, width, _ = x.shape

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, width, minilm.HEADS, -1).transpose(1, 2)

            attended = F.scaled_dot_product_attention(
                heads(self.query(x)),
                heads(self.key(x)),
                heads(self.value(x)),
                attn_mask=bias,
                dropout_p=DROPOUT if self.training else 0.0,
            )
            attended = attended.transpose(1, 2).reshape(batch, width, minilm.HIDDEN)
            x = self.attention_norm(x + self.dropout(self.attention_out(attended)))
            inner = F.gelu(self.intermediate(x))
            return self.output_norm(x + self.dropout(self.output(inner)))

    class Encoder(nn.Module):
        def __init__(self, weights: dict[str, np.ndarray]) -> None:
            super().__init__()
            positions, _ = weights["embeddings.position_embeddings.weight"].shape
            self.words = nn.Embedding.from_pretrained(torch.from_numpy(weights[FROZEN].copy()))
            self.positions = nn.Embedding(int(positions), minilm.HIDDEN)
            self.types = nn.Embedding(2, minilm.HIDDEN)
            self.norm = nn.LayerNorm(minilm.HIDDEN, eps=1e-12)
            self.layers = nn.ModuleList([Layer() for _ in range(minilm.LAYERS)])
            self.dropout = nn.Dropout(DROPOUT)
            own = {k: torch.from_numpy(weights[v].copy()) for k, v in _name_map().items()}
            self.load_state_dict({**own, "words.weight": self.words.weight}, strict=True)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = self.words(ids) + self.positions.weight[: ids.shape[1]] + self.types.weight[0]
            x = self.dropout(self.norm(x))
            # Padding gets a large negative score so no token attends to it.
            bias = ((1.0 - mask) * -1e4)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            weights = mask[..., None]
            return (x * weights).sum(1) / weights.sum(1)

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
    for n in range(minilm.LAYERS):
        for ours, theirs in LAYER_PARTS.items():
            for part in ("weight", "bias"):
                names[f"layers.{n}.{ours}.{part}"] = f"encoder.layer.{n}.{theirs}.{part}"
    return names


def build_encoder(weights: dict[str, np.ndarray]) -> Any:
    """The trainable torch encoder (an ``nn.Module``) initialised from checkpoint arrays;
    called with ``(ids, mask)`` it returns mean-pooled last-layer states."""
    return _module_classes()[1](weights)
