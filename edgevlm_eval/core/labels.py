"""Label spaces and the free-text answer -> labels mapping (method.md §5).

One home for turning a model's words into labels: per-task synonym tables, plurals, case and
spacing folded, longest phrase first (so "traffic cone" wins over "cone", "construction vehicle"
over "vehicle"). Whatever part of an answer maps to no label is returned as `unmapped`, so the
runner can count and log it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)\s*```", re.S)
_NON_WORD = re.compile(r"[^a-z0-9]+")
# Answer items that mean "no label" rather than "a label we could not read".
_EMPTY_ITEMS = {"", "none", "nothing", "no", "n a", "na", "no objects", "no object", "none of them",
                "none of the above", "no gesture", "no action", "empty"}
# An item naming no label that says one of these is an explicit "nothing", e.g. "the chef is doing nothing".
_EMPTY_WORDS = re.compile(r" (none|nothing|no (objects?|gestures?|actions?|categories))( |$)")
_SPLIT = re.compile(r"[,;\n|/]+|\band\b|\bor\b")


def extract_answer_text(text: str) -> str:
    """The answer part of a reply: the last <answer>...</answer> if present (VLM-R1 style),
    with <think> blocks and a code fence removed."""
    if text is None:
        return ""
    tags = _ANSWER_TAG.findall(text)
    if tags:
        text = tags[-1]
    else:
        text = _THINK.sub(" ", text)
    m = _FENCE.search(text)
    if m:
        text = m.group(1)
    return text.strip()


def normalize(text: str) -> str:
    """Lower case, punctuation / underscores / hyphens to single spaces."""
    return " " + _NON_WORD.sub(" ", text.lower()).strip() + " "


def _plurals(phrase: str) -> list[str]:
    """Simple English plurals of the phrase's last word: car->cars, bus->buses, person stays."""
    words = phrase.split()
    if not words:
        return []
    last = words[-1]
    forms = {last + "s"}
    if last.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(last + "es")
    if last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        forms.add(last[:-1] + "ies")
    return [" ".join(words[:-1] + [f]) for f in sorted(forms)]


@dataclass(frozen=True)
class ParsedAnswer:
    labels: tuple[str, ...]  # canonical labels, in order of first mention, no duplicates
    unmapped: tuple[str, ...]  # answer items that matched no label
    empty: bool  # the answer said "none"/"nothing" (or was blank)


@dataclass
class LabelSpace:
    """The task's labels, their synonyms, and whether a frame has one label or a set."""

    names: list[str]
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    multi_label: bool = True
    # Single-label tasks with a "no label" ground truth (ACE's -1000) name it here.
    none_label: str | None = None

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"duplicate labels in label space: {dup}")
        for k in self.synonyms:
            if k not in self.names:
                raise ValueError(f"synonyms given for '{k}', which is not a label of the space {self.names}")
        self._table = self._build_table()

    @classmethod
    def from_config(cls, cfg: Mapping) -> "LabelSpace":
        names, syn = [], {}
        for item in cfg["labels"]:
            if isinstance(item, str):
                names.append(item)
            else:
                names.append(str(item["name"]))
                if item.get("synonyms"):
                    syn[str(item["name"])] = [str(s) for s in item["synonyms"]]
        return cls(names=names, synonyms=syn, multi_label=bool(cfg.get("multi_label", True)),
                   none_label=cfg.get("none_label"))

    def _build_table(self) -> list[tuple[str, str]]:
        """(normalised phrase, canonical label), longest phrase first."""
        seen: dict[str, str] = {}
        for name in self.names:
            for phrase in [name, *self.synonyms.get(name, [])]:
                p = normalize(phrase).strip()
                if not p:
                    continue
                for form in [p, *_plurals(p)]:
                    owner = seen.setdefault(form, name)
                    if owner != name and form == p:
                        raise ValueError(f"phrase '{phrase}' maps to both '{owner}' and '{name}'")
        return sorted(seen.items(), key=lambda kv: (-len(kv[0]), kv[0]))

    def _match(self, item: str) -> list[tuple[int, str]]:
        """(position, label) of every phrase found in `item`, longest phrases claiming text first."""
        text = normalize(item)
        taken = [False] * len(text)
        found = []
        for phrase, label in self._table:
            needle = f" {phrase} "
            start = 0
            while True:
                i = text.find(needle, start)
                if i < 0:
                    break
                span = range(i + 1, i + 1 + len(phrase))
                if not any(taken[j] for j in span):
                    for j in span:
                        taken[j] = True
                    found.append((i, label))
                start = i + 1
        return found

    def parse(self, answer: str) -> ParsedAnswer:
        """Map free text to labels. Single-label spaces keep the first label mentioned."""
        text = extract_answer_text(answer)
        labels: list[tuple[int, int, str]] = []
        unmapped = []
        for k, item in enumerate(_SPLIT.split(text)):
            item = item.strip(" .:!?'\"`*-[](){}")
            hits = self._match(item)
            # A task's own label phrase wins over the "no label" words (IPN's "no gesture" is a class).
            if not hits and (normalize(item).strip() in _EMPTY_ITEMS or _EMPTY_WORDS.search(normalize(item))):
                continue
            if not hits:
                unmapped.append(item)
            labels.extend((k, pos, lab) for pos, lab in hits)
        ordered = []
        for _, _, lab in sorted(labels):
            if lab not in ordered:
                ordered.append(lab)
        if not self.multi_label:
            ordered = ordered[:1]
        return ParsedAnswer(labels=tuple(ordered), unmapped=tuple(unmapped),
                            empty=not ordered and not unmapped)

    def render(self, labels: Sequence[str], empty_text: str = "nothing") -> str:
        """Labels as the answer text a model would give (used in history snippets)."""
        return ", ".join(labels) if labels else empty_text

    def check(self, labels: Iterable[str], where: str) -> tuple[str, ...]:
        """Validate ground-truth labels produced by a converter."""
        labels = tuple(labels)
        allowed = set(self.names) | ({self.none_label} if self.none_label else set())
        bad = [lab for lab in labels if lab not in allowed]
        if bad:
            raise ValueError(f"{where}: labels {bad} are not in the task's label space {self.names}")
        return labels
