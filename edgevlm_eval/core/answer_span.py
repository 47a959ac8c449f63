"""Which part of a model's reply is its answer: in characters, and in generated tokens.

LAECIPS' confidence (collab/simulator.py `confidence`) is computed over the answer's tokens only,
so that a VLM-R1 style reply `<think>...</think><answer>car, truck</answer>` is judged by the
tokens that name its labels, not by its reasoning. One home for the rule, used by every adapter
that reports token probabilities:

- the answer is the content of the last `<answer>...</answer>` (to the end of the reply when it is
  not closed); without an answer tag, the reply with its `<think>...</think>` blocks removed (an
  unclosed `<think>` runs to the end: then there is no answer);
- inside it, the content of a ```fenced``` block when there is one;
- a grounding JSON answer (objects with a "label" key, as VLM-R1's REC fine-tune writes them)
  counts its label strings only: the scored answer is the labels, and box coordinates are digits
  whose probabilities say how sure the model is of a pixel, not of which objects are present (they
  would make every grounding reply look unconfident);
- whitespace around the answer is not counted.

A plain reply (no tags, fence or JSON) is its answer as a whole: every generated token counts, as
before this rule existed, and adapters need not locate anything.

Tokens are mapped to characters by the end offset of each token in the decoded reply
(`char_ends_by_decoding` for a local tokenizer, `char_ends_from_pieces` for an API's per-token
texts); a token is an answer token when its characters overlap the answer.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)(?:```|$)", re.S)
_LABEL_VALUE = re.compile(r'["\']?(?:label|name|category|class|object)["\']?\s*:\s*["\']([^"\']*)["\']')
_STRUCTURE = ("<answer", "<think", "```", "{")


def is_plain(text: str) -> bool:
    """No tags, fence or JSON: the whole reply is the answer."""
    low = (text or "").lower()
    return not any(s in low for s in _STRUCTURE)


def _refine(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    """The answer spans inside text[lo:hi]: a fence's content, a JSON's label values, stripped."""
    m = _FENCE.search(text, lo, hi)
    if m is not None:
        lo, hi = m.start(1), min(m.end(1), hi)
    if "{" in text[lo:hi]:
        labels = [(v.start(1), v.end(1)) for v in _LABEL_VALUE.finditer(text, lo, hi) if v.end(1) > v.start(1)]
        if labels:
            return labels
    seg = text[lo:hi]
    a = lo + (len(seg) - len(seg.lstrip()))
    b = hi - (len(seg) - len(seg.rstrip()))
    return [(a, b)] if b > a else []


def answer_spans(text: str | None) -> list[tuple[int, int]]:
    """Character spans [start, end) of the answer in `text` (module docstring); [] = no answer."""
    if not text:
        return []
    tags = list(_ANSWER_TAG.finditer(text))
    if tags:
        lo, hi = tags[-1].span(1)
        return _refine(text, lo, hi)
    spans, pos = [], 0
    for m in _THINK.finditer(text):
        if m.start() > pos:
            spans.extend(_refine(text, pos, m.start()))
        pos = m.end()
    if pos < len(text):
        spans.extend(_refine(text, pos, len(text)))
    return spans


def answer_text(text: str | None) -> str:
    """The characters `answer_spans` counts, joined by a space (for tests and logs)."""
    return " ".join(text[a:b] for a, b in answer_spans(text)) if text else ""


def token_mask(ends: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """For each token (its end offset in `ends`, in order), whether it overlaps an answer span. A
    token that adds no character (a partial multi-byte character) counts when it sits inside one."""
    out, start = [], 0
    for e in ends:
        if e > start:
            hit = any(start < b and e > a for a, b in spans)
        else:
            hit = any(a <= start < b for a, b in spans)
        out.append(hit)
        start = max(start, e)
    return out


def answer_token_probs(text: str, probs: Sequence[float], ends: Sequence[int] | None) -> list[float] | None:
    """The probabilities of the answer's tokens. `ends`: each token's end offset in `text`
    (None: unknown). A plain reply is all its tokens; otherwise None when the tokens cannot be
    placed (no offsets, or not one per probability)."""
    if is_plain(text):
        return [float(p) for p in probs]
    if ends is None or len(ends) != len(probs):
        return None
    mask = token_mask(ends, answer_spans(text))
    return [float(p) for p, keep in zip(probs, mask) if keep]


def char_ends_by_decoding(decode: Callable[[list[int]], str], ids: Sequence[int], text: str) -> list[int]:
    """Each token's end offset in `text` (= decode(ids)), from the lengths of the decoded prefixes,
    made non-decreasing and clipped to the text (a prefix that ends inside a multi-byte character
    decodes to a replacement character)."""
    ends, last, n = [], 0, len(text)
    ids = list(ids)
    for k in range(1, len(ids) + 1):
        last = min(n, max(last, len(decode(ids[:k]))))
        ends.append(last)
    return ends


def char_ends_from_pieces(pieces: Sequence[str | None], text: str,
                          piece_bytes: Sequence[Sequence[int] | None] | None = None) -> list[int] | None:
    """Each token's end offset in `text` from an API's per-token texts (or their UTF-8 bytes);
    None when they do not add up to the text."""
    if pieces and all(isinstance(p, str) for p in pieces) and "".join(pieces) == text:
        ends, pos = [], 0
        for p in pieces:
            pos += len(p)
            ends.append(pos)
        return ends
    if piece_bytes and all(b is not None for b in piece_bytes):
        raw = text.encode("utf-8")
        if b"".join(bytes(b) for b in piece_bytes) != raw:
            return None
        ends, pos = [], 0
        for b in piece_bytes:
            pos += len(b)
            ends.append(len(raw[:pos].decode("utf-8", errors="ignore")))
        return ends
    return None
