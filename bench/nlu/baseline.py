"""The reference every figure is compared with: TF-IDF word + character n-grams under
logistic regression (scikit-learn), trained and timed on the same split and machine."""

from __future__ import annotations

import time
from typing import Any

from bench.nlu.datasets import Split
from bench.nlu.metrics import percentile, scores


def run_tfidf_baseline(train: Split, test: Split, seed: int = 0) -> dict[str, Any]:
    """Train the baseline on ``train`` and score it on ``test``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    model = make_pipeline(
        FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                (
                    "chars",
                    TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                ),
            ]
        ),
        LogisticRegression(C=20, max_iter=2000, random_state=seed),
    )
    started = time.perf_counter()
    model.fit(train.texts, train.labels)
    train_seconds = time.perf_counter() - started
    predicted = list(model.predict(test.texts))
    latencies = []
    for text in test.texts[:300]:
        t0 = time.perf_counter()
        model.predict([text])
        latencies.append((time.perf_counter() - t0) * 1000)
    return {
        "name": "tfidf-logreg",
        **scores(test.labels, predicted),
        "train_seconds": train_seconds,
        "parse_ms_p50": percentile(latencies, 50),
        "parse_ms_p99": percentile(latencies, 99),
        "predictions": predicted,
    }
