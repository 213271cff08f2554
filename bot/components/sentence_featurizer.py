"""Dense features from a pretrained sentence encoder (all-MiniLM-L6-v2, shipped in a wheel).

Sentence features: the mean-pooled states of the configured encoder layers (each block
L2-normalised). Intent benchmarks here gain from the middle layers beside the last one: the
last layer is tuned for paraphrase similarity, the middle ones keep more of the wording.
Sequence features: per Rasa token, the mean of the last-layer states of its word pieces,
so DIET or the ResponseSelector can use the encoder too.

With ``fine_tune_epochs`` > 0 the featurizer first tunes the encoder on the training
data's intents (:mod:`bot.components.minilm_tuning`, PyTorch at training time only) and
stores the tuned weights (float16, ~21 MB) with the model; without it the encoder is used
as shipped and nothing is stored.

With ``quantize`` (the default) the encoder runs with compact int8/float16 weights in
PyTorch (:mod:`bot.components.minilm_torch`), in training and serving alike, so the classifier
learns from the features it will see. Where PyTorch is not installed it falls back, with
a warning, to the float32 NumPy encoder: slower, with features that differ slightly.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES, TOKENS_NAMES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.exceptions import InvalidConfigException, RasaException
from rasa.shared.nlu.constants import ACTION_TEXT, INTENT, INTENT_RESPONSE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.components import minilm
from bot.components.array_storage import read_arrays, write_arrays

logger = logging.getLogger(__name__)
TUNED_FILE = "tuned_encoder.npz"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
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
            # Epochs of fine-tuning on the intents before featurising (0: as shipped).
            "fine_tune_epochs": 0,
            "fine_tune_learning_rate": 1e-4,
            "fine_tune_batch_size": 32,
            # Bottom encoder layers kept as shipped while tuning (faster, same accuracy).
            "fine_tune_frozen_layers": 2,
            "random_seed": 0,
            # int8/float16 weights (PyTorch): a lone message twice as fast (p99 44 ->
            # 19 ms on the 2-core dev machine), same intent accuracy.
            "quantize": True,
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

        for key in ("fine_tune_epochs", "fine_tune_batch_size"):
            value = config.get(key)
            if not isinstance(value, int) or value < (0 if key == "fine_tune_epochs" else 1):
                raise InvalidConfigException(
                    f"SentenceEncoderFeaturizer: '{key}' must be a whole number "
                    f"({'0 or more' if key == 'fine_tune_epochs' else '1 or more'}), not {value!r}"
                )
        frozen = config.get("fine_tune_frozen_layers")
        if not isinstance(frozen, int) or not 0 <= frozen < minilm.LAYERS:
            raise InvalidConfigException(
                f"SentenceEncoderFeaturizer: 'fine_tune_frozen_layers' must be a whole "
                f"number 0..{minilm.LAYERS - 1}, not {frozen!r}"
            )
        if not isinstance(config.get("quantize"), bool):
            raise InvalidConfigException(
                f"SentenceEncoderFeaturizer: 'quantize' must be true or false, "
                f"not {config.get('quantize')!r}"
            )
        rate = config.get("fine_tune_learning_rate")
        if not isinstance(rate, (int, float)) or not 0 < rate < 1:
            raise InvalidConfigException(
                f"SentenceEncoderFeaturizer: 'fine_tune_learning_rate' must be a number "
                f"between 0 and 1, not {rate!r}"
            )

    def __init__(
        self,
        config: dict[str, Any],
        name: str,
        model_storage: ModelStorage | None = None,
        resource: Resource | None = None,
    ) -> None:
        super().__init__(name, config)
        self.layers = tuple(self._config["layers"])
        self._model_storage = model_storage
        self._resource = resource
        # None: the shipped encoder, shared by every component in the process.
        self._tuned: minilm.MiniLM | None = None
        self._warned_no_torch = False

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SentenceEncoderFeaturizer:
        return cls(config, execution_context.node_name, model_storage, resource)

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> SentenceEncoderFeaturizer:
        """The featurizer with the tuned encoder stored at training time, if any."""
        component = cls(config, execution_context.node_name, model_storage, resource)
        tuned = read_arrays(model_storage, resource, TUNED_FILE)
        if tuned is not None:  # else not fine-tuned: the shipped encoder
            component._tuned = minilm.MiniLM(minilm.model_dir(), tuned, component.quantized)
        return component

    @staticmethod
    def required_packages() -> list[str]:
        return ["tokenizers", "safetensors", minilm.MODEL_PACKAGE]

    @property
    def encoder(self) -> minilm.MiniLM:
        """The encoder this featurizer runs: its tuned one, or the shared shipped one."""
        return self._tuned or minilm.shared_encoder(self.quantized)

    @property
    def quantized(self) -> bool:
        """Whether the encoder runs with int8 weights: asked for, and PyTorch is here."""
        if not self._config["quantize"]:
            return False
        if importlib.util.find_spec("torch") is None:
            if not self._warned_no_torch:
                self._warned_no_torch = True
                logger.warning(
                    "SentenceEncoderFeaturizer: quantize is on but PyTorch is not "
                    "installed; running the float32 NumPy encoder instead (slower). "
                    "Install requirements-training.txt or set quantize: false."
                )
            return False
        return True

    def train(self, training_data: TrainingData) -> Resource:
        """Fine-tune the encoder on the intent examples (when ``fine_tune_epochs`` > 0)
        and store the tuned weights; otherwise there is nothing to learn."""
        if self._resource is None or self._model_storage is None:
            raise ValueError("SentenceEncoderFeaturizer.train needs a model storage")
        epochs = int(self._config["fine_tune_epochs"])
        examples = [m for m in training_data.intent_examples if m.get(TEXT) and m.get(INTENT)]
        # Retrieval intents (faq/opening_hours) keep their sub-intent: finer labels.
        labels = [str(m.get(INTENT_RESPONSE_KEY) or m.get(INTENT)) for m in examples]
        if epochs == 0 or len(set(labels)) < 2:
            return self._resource
        if importlib.util.find_spec("torch") is None:
            raise RasaException(
                "SentenceEncoderFeaturizer: fine_tune_epochs > 0 needs PyTorch at training "
                "time; install requirements-training.txt (make install does) or set "
                "fine_tune_epochs: 0 in config.yml"
            )
        from bot.components import minilm_tuning

        started = time.perf_counter()
        folder = minilm.model_dir()
        tuned = minilm_tuning.fine_tune(
            minilm.checkpoint(folder),
            minilm.tokenizer(folder),
            [str(m.get(TEXT)) for m in examples],
            labels,
            epochs=epochs,
            learning_rate=float(self._config["fine_tune_learning_rate"]),
            batch_size=int(self._config["fine_tune_batch_size"]),
            seed=int(self._config["random_seed"]),
            frozen_layers=int(self._config["fine_tune_frozen_layers"]),
        )
        logger.info(
            "Fine-tuned the sentence encoder on %d examples (%d intents, %d epochs) in %.0f s",
            len(examples),
            len(set(labels)),
            epochs,
            time.perf_counter() - started,
        )
        # float16 halves the stored model; the features move by ~1e-3, far below what
        # separates intents. This instance uses what was stored, as a loaded one will.
        stored = {name: array.astype(np.float16) for name, array in tuned.items()}
        write_arrays(self._model_storage, self._resource, TUNED_FILE, stored)
        self._tuned = minilm.MiniLM(folder, stored, self.quantized)
        return self._resource

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
        sentences, pieces = self.encoder.encode_with_pieces(texts, self.layers)
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
