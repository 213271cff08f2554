"""Customer text as the customer saw it: one Unicode form, no invisible characters.

Every channel's text passes through :func:`normalise` (via ``connectors.inbound``) before
NLU, the transcript or anything else sees it. Emoji stay; what is removed could never be
read by a person: control characters, zero-width and other format characters, lone
surrogates, and runs of whitespace.
"""

from __future__ import annotations

import re
import unicodedata

ZERO_WIDTH_JOINER = "\u200d"
VARIATION_SELECTOR = "\ufe0f"
# Whitespace runs within a line, and blank lines between paragraphs.
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")
# Emoji (and a few symbols) that say "yes" on their own; skin tones and the emoji
# variation selector are ignored when comparing.
AFFIRMING_EMOJI = frozenset({"👍", "👌", "✅", "✔", "🆗"})
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\ufe0e]")


def _keep(char: str, previous: str) -> bool:
    category = unicodedata.category(char)
    if char in "\n\t":
        return True
    if category == "Cf":
        # A zero-width joiner inside an emoji sequence (👨‍👩‍👧) is part of the emoji.
        return char == ZERO_WIDTH_JOINER and (
            previous == VARIATION_SELECTOR or unicodedata.category(previous or " ") == "So"
        )
    return category not in {"Cc", "Cs"}


def normalise(text: str) -> str:
    """NFC, invisible characters removed, whitespace collapsed (line breaks kept once)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    kept: list[str] = []
    for char in text:
        if _keep(char, kept[-1] if kept else ""):
            kept.append(char)
    cleaned = _SPACES.sub(" ", "".join(kept))
    return _BLANK_LINES.sub("\n", cleaned).strip()


def has_words(text: str) -> bool:
    """Whether the text has a letter or a digit (anything NLU could understand)."""
    return any(unicodedata.category(char)[0] in "LN" for char in text)


def is_affirming_emoji(text: str) -> bool:
    """A lone 👍 (any skin tone), 👌, ✅, ✔ or 🆗."""
    return _EMOJI_MODIFIERS.sub("", text).strip() in AFFIRMING_EMOJI
