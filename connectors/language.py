"""Is a message clearly in another language than English?

The assistant speaks English only. A message that is clearly Dutch, German, French,
Spanish, Italian or Portuguese gets an answer in that language saying so (and the offer
of a person) instead of a guess at its meaning. The detector is lingua's, whose
language models ship inside its wheel (nothing is downloaded); it weighs only the
languages above, in high-accuracy mode (about 230 MB, loaded once per process), because
its low-accuracy mode took a fifth of our English training examples for French or German.

Short or mixed messages stay English: a message needs three words and a clear lead
(thresholds checked against every English example in ``data/nlu``, none flagged).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

ENGLISH = "en"
LANGUAGES = ("ENGLISH", "DUTCH", "GERMAN", "FRENCH", "SPANISH", "ITALIAN", "PORTUGUESE")
MIN_WORDS = 3
# The other language's confidence must reach this, and English's stay below the other.
MIN_CONFIDENCE = 0.5
MAX_ENGLISH_CONFIDENCE = 0.2
# Enough text to be sure; more only costs time.
MAX_CHARS_EXAMINED = 400
_WORD = re.compile(r"[^\W\d_]{2,}")
_BUILDING = threading.Lock()


def detector() -> Any:
    """The process's lingua detector (built once, on first use; takes about a second)."""
    with _BUILDING:  # channels warm it up from several threads at start
        return _build_detector()


@functools.lru_cache(maxsize=1)
def _build_detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    languages = [getattr(Language, name) for name in LANGUAGES]
    builder = LanguageDetectorBuilder.from_languages(*languages)
    return builder.with_preloaded_language_models().build()


def detect_language(text: str) -> str:
    """ISO 639-1 code of the message's language: ``en`` unless clearly another."""
    sample = text[:MAX_CHARS_EXAMINED]
    if len(_WORD.findall(sample)) < MIN_WORDS:
        return ENGLISH
    confidences = detector().compute_language_confidence_values(sample)
    top = confidences[0]
    english = next((c.value for c in confidences if c.language.iso_code_639_1.name == "EN"), 0.0)
    code = str(top.language.iso_code_639_1.name).lower()
    if code != ENGLISH and top.value >= MIN_CONFIDENCE and english <= MAX_ENGLISH_CONFIDENCE:
        return code
    return ENGLISH
