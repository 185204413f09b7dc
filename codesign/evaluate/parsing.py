"""Map a model's free text to a label id, :data:`REFUSED` or :data:`INVALID`.

Rules shared by every parser (the three-valued outcome of the issue):

- empty / whitespace / special-token-only text is INVALID;
- an explicit abstention ("I cannot", "I'm sorry", "I don't know", "it depends", "neutral"
  where neutral is not a label, ...) is REFUSED when it opens the answer, or when no label is
  named anywhere;
- if the answer *opens* with one label ("Positive.", "B) ...", "not wrong, because ..."), that
  label wins even if others are named later (models explain themselves after answering);
- otherwise exactly one distinct label named in the text is the answer; several distinct
  labels at once (or none) is INVALID.

Matching is on whole words, case-insensitive, longest option first, so "not wrong" is never
read as "wrong" and "no" is never found inside "not" or "know".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from codesign.records import INVALID, REFUSED

# Phrases that mean "I won't / can't answer". Matched case-insensitively on normalised text
# (curly apostrophes straightened). Kept as plain strings: the list is the documentation.
REFUSAL_PHRASES: tuple[str, ...] = (
    "i cannot", "i can't", "i can not", "i'm not able", "i am not able", "i'm unable", "i am unable",
    "i won't", "i will not", "i'm sorry", "i am sorry", "sorry, but", "i apologize", "i apologise",
    "i don't know", "i do not know", "i dont know", "i'm not sure", "i am not sure", "not sure",
    "as an ai", "as a language model", "as an artificial intelligence", "i don't have", "i do not have",
    "i'm not capable", "it is not possible to", "it's not possible to", "cannot be determined",
    "can't be determined", "cannot determine", "can't determine", "unable to determine",
    "not enough information", "insufficient information", "no way to know", "it depends",
    "i would rather not", "i prefer not", "i refuse", "not appropriate for me", "cannot answer",
    "can't answer", "cannot provide", "can't provide", "unknown", "neither",
)

_SPECIAL = re.compile(r"<\|[^|>]*\|>|</?s>|\[/?INST\]")
_WS = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """Lower-case, straighten quotes, drop chat special tokens and markdown emphasis, squeeze spaces."""
    if not text:
        return ""
    t = _SPECIAL.sub(" ", text)
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    t = t.replace("**", "").replace("__", "").replace("`", "")
    return _WS.sub(" ", t).strip().lower()


def refusal_position(norm: str) -> int | None:
    """Character offset of the first refusal phrase in normalised text, or None."""
    best = None
    for p in REFUSAL_PHRASES:
        m = re.search(r"(?<![a-z])" + re.escape(p) + r"(?![a-z])", norm)
        if m and (best is None or m.start() < best):
            best = m.start()
    return best


def is_refusal(text: str | None) -> bool:
    """True if the text contains an explicit abstention phrase (see :data:`REFUSAL_PHRASES`)."""
    return refusal_position(normalize(text)) is not None


def _word_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.lower().split()]
    return re.compile(r"(?<![a-z0-9])" + r"[\s\-_]+".join(words) + r"(?![a-z0-9])")


def find_mentions(norm: str, names: Mapping[str, int]) -> list[tuple[int, int, int]]:
    """(start, end, label) of every whole-word mention of a name, longest names first, no overlaps."""
    taken = [False] * len(norm)
    hits: list[tuple[int, int, int]] = []
    for name in sorted(names, key=len, reverse=True):
        for m in _word_pattern(name).finditer(norm):
            if any(taken[m.start():m.end()]):
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            hits.append((m.start(), m.end(), names[name]))
    return sorted(hits)


_LEAD = re.compile(r"^(?:the\s+)?(?:final\s+|correct\s+|my\s+)?(?:answer|label|sentiment|verdict|reaction|"
                   r"prediction|response|output)?\s*(?:is|:|=|-)?\s*(?:that\s+)?(?:this\s+is\s+)?[\"'(\[]*")


def parse_options(text: str | None, options: Sequence[str], aliases: Mapping[str, int] | None = None,
                  refusal_labels: Mapping[str, int] | None = None) -> int:
    """Parse a free-text answer naming one of ``options`` (label id = index in ``options``).

    ``aliases`` maps extra phrasings to label ids (e.g. ``{"entailment": 0}``);
    ``refusal_labels`` maps phrases that mean abstention *for this task* to REFUSED-like codes
    (e.g. ``{"i don't know": REFUSED}``); they take part in matching like labels.
    """
    norm = normalize(text)
    if not norm:
        return INVALID
    names: dict[str, int] = {o.lower(): i for i, o in enumerate(options)}
    for k, v in (aliases or {}).items():
        names.setdefault(k.lower(), v)
    for k, v in (refusal_labels or {}).items():
        names.setdefault(k.lower(), v)
    hits = find_mentions(norm, names)
    refusal_at = refusal_position(norm)
    # An answer that opens with a label: strip a leading "The answer is" / "This is" preamble.
    lead = _LEAD.sub("", norm, count=1)
    offset = len(norm) - len(lead)
    if hits and hits[0][0] <= offset + 1 and (refusal_at is None or refusal_at > hits[0][0]):
        # The opening label stands alone ("Negative. Because ...", "Yes, ...") - not "positive and negative".
        rest = norm[hits[0][1]:]
        if not rest or re.match(r"^\s*(?:[.,;:!?)\]\"'\n]|$|-|because|since|as\b)", rest):
            return hits[0][2]
    if refusal_at is not None and (not hits or refusal_at < hits[0][0]):
        return REFUSED
    distinct = {lab for _, _, lab in hits}
    if len(distinct) == 1:
        return distinct.pop()
    if not hits and refusal_at is not None:
        return REFUSED
    return INVALID


_LETTER_LEAD = re.compile(r"^\s*(?:the\s+)?(?:correct\s+|final\s+|best\s+)?(?:answer|option|choice)?\s*"
                          r"(?:is|:)?\s*(?:option\s+|choice\s+)?[\(\[\"']?\s*([a-z])\s*(?:[\)\]\.:,\"'\-]|$|\s)")
_LETTER_PHRASE = re.compile(r"(?:answer|option|choice)\s*(?:is|would be|:)?\s*[\(\[\"']?([a-z])(?![a-z])")


def parse_letter(text: str | None, choices: Sequence[str] | None = None, letters: str = "ABCD") -> int:
    """Parse a multiple-choice answer given as a letter ("B", "(B)", "B. Mitochondria",
    "The answer is B") or, failing that, as the exact text of one choice.
    """
    norm = normalize(text)
    if not norm:
        return INVALID
    valid = letters.lower()
    refusal_at = refusal_position(norm)
    m = _LETTER_LEAD.match(norm)
    named = {g for g in _LETTER_PHRASE.findall(norm) if g in valid}
    # A bare leading "a" is ambiguous with the article ("A man ..."): accept it, in either case, only
    # after an "answer"/"option"/"choice" preamble or when a bracket, punctuation or the end follows
    # ("A", "a.", "(a)"; an article is never followed by punctuation). A leading letter contradicted
    # later ("option A or option B") is not an answer.
    if m and m.group(1) in valid and not (named - {m.group(1)}):
        raw = (text or "").strip().lstrip("([\"'*")
        if m.group(1) != "a" or re.match(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)", norm) \
                or re.match(r"^[Aa]\s*(?:[\)\]\.:,]|$)", raw):
            return valid.index(m.group(1))
    if refusal_at is not None and refusal_at < 40:
        # a choice can itself be a refusal phrase (MMLU's "Neither", "Unknown"): naming it answers
        # (parse_options weighs the refusal against the choices' text)
        hit = parse_options(text, choices) if choices else REFUSED
        return hit if hit >= 0 and refusal_position(normalize(choices[hit])) is not None else REFUSED
    found = {valid.index(g) for g in named}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        return INVALID
    # Upper-case standalone letters in the original text ("I think B.") — not the article "A".
    raw_letters = set(re.findall(r"(?<![A-Za-z])([%s])(?=[\)\].:,]|\s*$)" % letters, text or ""))
    if len(raw_letters) == 1:
        return letters.index(raw_letters.pop())
    if choices:
        hit = parse_options(text, [c for c in choices])
        if hit >= 0:
            return hit
        if hit == REFUSED:
            return REFUSED
    if refusal_at is not None:
        return REFUSED
    return INVALID


def parse_digit(text: str | None, n_choices: int = 4, choices: Sequence[str] | None = None,
                refusal_digit: int | None = None) -> int:
    """Parse a numbered multiple-choice answer ("2", "2: Pope Pius XII", "The answer is 3").

    As in DecodingTrust's OOD-knowledge evaluation the first digit in the valid range wins, read
    before any "202x" year; ``refusal_digit`` (the "I don't know" option) maps to REFUSED. The
    exact text of one choice also counts.
    """
    norm = normalize(text)
    if not norm:
        return INVALID
    head = norm.split("202")[0]
    top = n_choices if refusal_digit is None else max(n_choices, refusal_digit + 1)
    refusal_at = refusal_position(norm)
    m = re.search(r"(?<![0-9.,])([0-9])(?![0-9])", head)
    if m and int(m.group(1)) < top and (refusal_at is None or refusal_at > m.start()):
        d = int(m.group(1))
        return REFUSED if d == refusal_digit else d
    if refusal_at is not None:
        return REFUSED
    if choices:
        hit = parse_options(text, list(choices))
        if hit >= 0:
            return hit
    return INVALID
