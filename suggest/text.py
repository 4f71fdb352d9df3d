"""Text normalisation shared by index builds and the request path (stdlib only)."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "tokens", "singular", "fold_key", "has_control_chars"]

_NON_WORD = re.compile(r"[^\w&'%]+")
_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 and C1 controls, tab and newline included

# Words that end in "s" but are not plurals (or whose plural rule would mangle them).
_KEEP = frozenset(
    "hummus asparagus couscous swiss molasses citrus lotus series species gas glass bass "
    "grass moss floss chips-ahoy always plus bus lens news hibiscus octopus cactus "
    "anise quinoa oats cheerios brussels".split()
)


def has_control_chars(text: str) -> bool:
    return bool(_CONTROL.search(text))


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation to spaces, single spaces; keeps & ' % inside words."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("\u2019", "'").replace("`", "'")
    text = _NON_WORD.sub(" ", text).replace("_", " ")
    text = _APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    return text.split()


def singular(word: str) -> str:
    """A conservative English singular, for collapsing plural variants of one phrase."""
    if len(word) <= 3 or word in _KEEP or not word.endswith("s") or word.endswith(("ss", "us", "is", "'s")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "oes")):
        return word[:-2]
    return word[:-1]


def fold_key(normalized: str) -> str:
    """Key under which singular/plural variants of a phrase collapse."""
    return " ".join(singular(w) for w in normalized.split())
