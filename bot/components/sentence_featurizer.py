"""Dense features from a pretrained sentence encoder (all-MiniLM-L6-v2, shipped in a wheel).

Sentence features: the mean-pooled states of the configured encoder layers (each block
L2-normalised). Intent benchmarks here gain from the middle layers beside the last one: the
last layer is tuned for paraphrase similarity, the middle ones keep more of the wording.
Sequence features: per Rasa token, the mean of the last-layer states of its word pieces,
so DIET or the ResponseSelector can use the encoder too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES, TOKENS_NAMES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import ACTION_TEXT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.components import minilm


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class SentenceEncoderFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds all-MiniLM-L6-v2 sentence and token features to text attributes."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [Tokenizer]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # Encoder layers (0 = word embeddings ... 6 = last) pooled into the
            # sentence feature, one 384-wide block each.
            "layers": [minilm.LAYERS],
        }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        layers = config.get("layers")
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(n, int) and 0 <= n <= minilm.LAYERS for n in layers)
        ):
            raise InvalidConfigException(
                f"SentenceEncoderFeaturizer: 'layers' must be a non-empty list of "
                f"integers 0..{minilm.LAYERS}, not {layers!r}"
            )

    def __init__(self, config: dict[str, Any], name: str) -> None:
        super().__init__(name, config)
        self.layers = tuple(self._config["layers"])

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceEncoderFeaturizer:
        return cls(config, execution_context.node_name)

    @staticmethod
    def required_packages() -> list[str]:
        return ["tokenizers", "safetensors", minilm.MODEL_PACKAGE]

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Featurise every training example's text, response and action text."""
        for attribute in DENSE_FEATURIZABLE_ATTRIBUTES:
            self._featurize(
                [m for m in training_data.training_examples if m.get(attribute)], attribute
            )
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        """Featurise incoming messages (labels were featurised during training)."""
        for attribute in (TEXT, ACTION_TEXT):
            self._featurize([m for m in messages if m.get(attribute)], attribute)
        return messages

    def _featurize(self, messages: list[Message], attribute: str) -> None:
        if not messages:
            return
        texts = [m.get(attribute) for m in messages]
        sentences, pieces = minilm.shared_encoder().encode_with_pieces(texts, self.layers)
        for message, sentence, word_pieces in zip(messages, sentences, pieces, strict=True):
            tokens = message.get(TOKENS_NAMES[attribute]) or []
            self.add_features_to_message(
                # Without tokens (no tokenizer ran on this attribute) there is no
                # sequence to describe.
                sequence=token_features(tokens, word_pieces) if tokens else None,
                sentence=sentence.reshape(1, -1),
                attribute=attribute,
                message=message,
            )


def token_features(tokens: list[Any], pieces: minilm.WordPieces) -> np.ndarray:
    """One row per Rasa token: the mean state of the word pieces inside its character
    span (zeros when none is, e.g. past the encoder's 128-piece limit)."""
    rows = np.zeros((len(tokens), minilm.HIDDEN), dtype=np.float32)
    spans = [(i, s, e) for i, (s, e) in enumerate(pieces.spans) if e > s]
    for row, token in enumerate(tokens):
        inside = [i for i, s, e in spans if s >= token.start and e <= token.end]
        if inside:
            rows[row] = pieces.states[inside].mean(axis=0)
    return rows
