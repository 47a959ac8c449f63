"""Label spaces and the free-text answer -> labels mapping (method.md §5).

One home for turning a model's words into labels: per-task synonym tables, plurals, case and
spacing folded, longest phrase first (so "traffic cone" wins over "cone", "construction vehicle"
over "vehicle"). Whatever part of an answer maps to no label is returned as `unmapped`, so the
runner can count and log it.

Answers are read as a reader would: a label that the answer says is absent ("no bus", "there are
no trucks or buses", "truck: no", "trucks are not present", "I cannot see any cones", "neither a
bus nor a truck", "Not present:" followed by a list) is not a detection, and is not unmapped
either. The rules (docs/tasks.md, "How answers become labels"):

- Reasoning is dropped: the last <answer>...</answer> when there is one, else the text with
  <think> blocks (and anything before a lone </think>) removed; a code fence's content; JSON
  (Qwen grounding lists with "label" fields, {"car": true, ...}, {"absent": [...]}) read as lines.
- Label phrases are matched first (longest phrase at each position), so a label's own words
  ("no gesture", "not a gesture") are never read as a negation.
- A negation word before labels ("no", "not", "without", "neither"/"nor", "cannot see any",
  "none of", "absent:", "rather than", "instead of" ...) negates the labels that follow it in the
  same sentence, across a comma/and/or list, until a contrast word ("but", "however", "only",
  "except", "although", "while" ...), a new statement after a negated item ("there is", "I see",
  "is", "are", "visible" ...), a number or plural quantifier after "and"/comma ("and two buses"),
  or the end of the sentence, line or ";".
- A negation after a label ("truck: no", "trucks are not present", "bus (none)", "cones: 0",
  "trucks and buses are absent") negates that label, and the list just before it when the list
  opens the sentence ("Trucks, buses and trailers are not visible").
- A line ending with ':' that holds a negation ("**Not present:**") negates the lines under it
  until the next such header or a blank line after them.
- A label both affirmed and denied in one answer counts as present: any positive mention wins
  (presence is existential: "a car on the left, no car on the right" has a car).
- Single-label spaces keep the first label positively mentioned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_THINK_END = re.compile(r"</think>", re.I)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)\s*```", re.S)
_NON_WORD = re.compile(r"[^a-z0-9]+")
# Answer items that mean "no label" rather than "a label we could not read".
_EMPTY_ITEMS = {"", "none", "nothing", "no", "n a", "na", "no objects", "no object", "none of them",
                "none of the above", "no gesture", "no action", "empty"}
# An item naming no label that says one of these is an explicit "nothing", e.g. "the chef is doing nothing".
_EMPTY_WORDS = re.compile(r" (none|nothing|no (objects?|gestures?|actions?|categories))( |$)")

# -- tokens ----------------------------------------------------------------------------------------
# Words (and decimals), and the punctuation that carries structure, folded to a few kinds:
# "." sentence end (also ! ? ;), "\n" line end, "\n\n" blank line, "," list separator (also /),
# ":" key/value or header (also =, a spaced dash, a markdown table's |), "(" and ")". Everything
# else (markdown *, #, quotes, an in-word hyphen or underscore) is a word separator.
_TOKEN = re.compile(r"\d+(?:\.\d+)+|[a-z0-9]+|\n[ \t]*\n\s*|\n|[.!?;]+|[,|/:=()\[\]]|\s[-\u2013\u2014]+\s"
                    r"|[\u2013\u2014]|[\u2713\u2714\u2705\u2611]|[\u2717\u2718\u274c\u274e]")
_PUNCT = {",": ",", "|": ":", "/": ",", ":": ":", "=": ":", "(": "(", "[": "(", ")": ")", "]": ")",
          "\u2013": ":", "\u2014": ":", "\u2713": "yes", "\u2714": "yes", "\u2705": "yes", "\u2611": "yes",
          "\u2717": "no", "\u2718": "no", "\u274c": "no", "\u274e": "no"}
_NT = re.compile(r"n't\b")
_NUMBERING = re.compile(r"(?m)^[ \t]*\d{1,2}[.)][ \t]+")  # "1. Car" list numbers
_HARD = frozenset({".", "\n", "\n\n"})  # sentence / line ends: every scope ends

# Negation cues. "not" followed by one of _NOT_HEDGE is no negation ("not only", "not sure").
_NEG = frozenset({"no", "not", "without", "neither", "nor", "never", "none", "cannot", "zero", "absent",
                  "absence", "missing", "lack", "lacks", "lacking", "unable", "nowhere", "nobody", "excluding",
                  "isnt", "arent", "dont", "doesnt", "didnt", "cant", "wont", "wasnt", "werent", "havent",
                  "hasnt", "couldnt"})
_NOT_HEDGE = frozenset({"only", "just", "sure", "certain", "entirely", "necessarily", "quite", "clear", "far", "too",
                        "very", "much"})
# Words that deny what follows "of" ("instead of a truck", "free of traffic").
_NEG_OF = frozenset({"instead", "free", "empty", "devoid"})
# Values that deny only as a key's value ("cones: 0", "truck: false").
_NEG_VALUE = frozenset({"0", "false"})
# Contrast words: a negation's scope ends here ("no trucks, but a bus"; "no vehicles except a car").
_BREAK = frozenset({"but", "however", "although", "though", "whereas", "while", "yet", "except", "only", "just",
                    "instead", "besides", "otherwise", "apart", "aside", "also"})
# A new statement after a negated item ends the scope ("no trucks are visible, and there is a car").
_RESET = frozenset({"is", "are", "s", "was", "were", "see", "sees", "seen", "spot", "notice", "observe",
                    "shows", "show", "showing", "contains", "contain", "containing", "includes", "include",
                    "including", "has", "have", "there", "visible", "present", "appear", "appears", "i", "we",
                    "it", "they", "yes"})
# A number or plural quantifier after "and" / a comma starts a new, positive item ("no trucks and two buses").
_QUANT = frozenset({"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "some",
                    "many", "multiple", "numerous", "various", "lots", "plenty", "few", "couple", "dozens"})
# Between a label and a negation that follows it ("trucks are not", "truck: no", "bus (none)").
_BRIDGE = frozenset({":", "(", "is", "are", "s", "was", "were", "be", "been", "being", "am", "do", "does", "did",
                     "can", "could", "will", "would", "may", "might", "seem", "seems", "appear", "appears",
                     "currently", "clearly", "definitely", "really", "actually", "visibly", "obviously", "here",
                     "there", "all", "both", "completely", "entirely", "to"})
# Words of a list of labels ("trucks, buses and the trailers"), walked back from a negation after it.
_LIST = frozenset({",", "and", "or", "nor", "a", "an", "the", "some", "any", "both", "either", "several", "many",
                   "multiple", "one", "two", "three", "four", "five"})
# What may follow a negation that denies the label before it ("truck not visible", "cones: none").
_POST_PRED = frozenset({"visible", "present", "seen", "detected", "there", "shown", "found", "included", "observed",
                        "spotted", "apparent", "noticeable", "discernible", "identifiable", "detectable", "in", "here",
                        "from", "longer", "at", "applicable", "recognizable", "recognisable"})
_ADVERB = frozenset({"clearly", "currently", "really", "actually", "fully", "easily", "readily", "obviously"})
# Skipped when looking whether a negation is followed by a label ("the car is not a truck").
_FWD_SKIP = frozenset({"a", "an", "the", "any", "single", "other", "one", "even", "really", "actually", "exactly"})


def _tokens(text: str) -> list[str]:
    """Lower-cased words and structure tokens; "n't" spelt "not"."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    if "n't" in t:
        t = _NT.sub(" not", t.replace("can't", "can not").replace("won't", "will not"))
    if t[:1].isdigit() or "\n" in t:
        t = _NUMBERING.sub("", t)
    out = []
    for m in _TOKEN.finditer(t):
        s = m.group()
        c = s[0]
        if c.isalnum():
            out.append(s)
        elif c == "\n":
            out.append("\n\n" if s.count("\n") > 1 else "\n")
        elif c in ".!?;":
            out.append(".")
        elif c.isspace():
            out.append(":")  # a spaced dash: "Truck - no"
        else:
            out.append(_PUNCT[c])
    return out


# -- reasoning, fences and JSON --------------------------------------------------------------------


def extract_answer_text(text: str) -> str:
    """The answer part of a reply: the last <answer>...</answer> if present (VLM-R1 style), else
    the text with <think> blocks (and everything before a </think> whose <think> was not
    generated) removed; then a code fence's content."""
    if text is None:
        return ""
    tags = _ANSWER_TAG.findall(text)
    if tags:
        text = tags[-1]
    else:
        text = _THINK.sub(" ", text)
        ends = list(_THINK_END.finditer(text))
        if ends:
            text = text[ends[-1].end():]
    m = _FENCE.search(text)
    if m:
        text = m.group(1)
    return text.strip()


_LABEL_FIELD = re.compile(r'"(?:label|category|class|name|object)"\s*:\s*"([^"]*)"', re.I)
_OPEN_FENCE = re.compile(r"^```[a-zA-Z]*\s*")
_LABEL_KEYS = ("label", "category", "class", "name", "object")
_JSON = json.JSONDecoder()


def _json_lines(value) -> list[str]:
    """A parsed JSON answer as text lines the parser reads: a list of labels or of
    {"label": ...} boxes -> one label a line; {"car": true, "truck": false} -> "car: yes",
    "truck: no"; {"absent": ["truck"]} -> "absent: truck"."""
    if isinstance(value, dict):
        low = {str(k).lower(): v for k, v in value.items()}
        for k in _LABEL_KEYS:
            if isinstance(low.get(k), str):
                return [low[k]]
        out = []
        for k, v in value.items():
            if isinstance(v, bool):
                out.append(f"{k}: {'yes' if v else 'no'}")
            elif v is None:
                out.append(f"{k}: none")
            elif isinstance(v, (int, float, str)):
                out.append(f"{k}: {v}")
            elif isinstance(v, list) and all(isinstance(x, str) for x in v):
                out.append(f"{k}: {', '.join(v) if v else 'none'}")
            else:
                out.extend(f"{k}: {line}" for line in _json_lines(v))
        return out
    if isinstance(value, list):
        return [line for v in value for line in _json_lines(v)]
    return [value] if isinstance(value, str) else []  # numbers in a list are coordinates, not labels


def _unjson(text: str) -> str:
    """JSON answers (a whole reply, or a leading JSON value followed by prose) as lines; a
    truncated grounding list still gives its "label" fields."""
    if text.startswith("```"):  # a fence the reply never closed (cut at the token limit)
        text = _OPEN_FENCE.sub("", text, count=1)
    if not text or text[0] not in "[{":
        return text
    try:
        value, end = _JSON.raw_decode(text)
    except ValueError:
        found = _LABEL_FIELD.findall(text)
        return "\n".join(found) if found else text
    rest = text[end:].strip()
    return "\n".join(_json_lines(value)) + ("\n\n" + rest if rest else "")


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
    labels: tuple[str, ...]  # canonical labels positively mentioned, in order of first such mention
    unmapped: tuple[str, ...]  # answer items that matched no label (and were not negated)
    empty: bool  # the answer names no label and nothing unreadable ("none", "no trucks", blank)
    negated: tuple[str, ...] = ()  # labels only mentioned as absent, in order of mention


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
        self._index = self._build_index()

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

    def _build_index(self) -> dict[str, list[tuple[list[str], int, tuple]]]:
        """first word -> [(phrase words, length, mention unit)], longest phrase first; a mention
        unit is (canonical label,) or (canonical label, True) for a phrase opening with a negation."""
        seen: dict[tuple[str, ...], str] = {}
        for name in self.names:
            for phrase in [name, *self.synonyms.get(name, [])]:
                p = " ".join(w for w in _tokens(phrase) if w[0].isalnum())
                if not p:
                    continue
                for form in [p, *_plurals(p)]:
                    key = tuple(form.split())
                    owner = seen.setdefault(key, name)
                    if owner != name and form == p:
                        raise ValueError(f"phrase '{phrase}' maps to both '{owner}' and '{name}'")
        index: dict[str, list[tuple[list[str], int, tuple]]] = {}
        for words, label in seen.items():
            # A phrase that is itself a statement of absence ("no gesture", "not a gesture") is
            # marked so that an earlier negation does not deny it again.
            unit = (label, True) if words[0] in _NEG else (label,)
            index.setdefault(words[0], []).append((list(words), len(words), unit))
        for cands in index.values():
            cands.sort(key=lambda c: (-c[1], c[0]))
        return index

    def _mentions(self, toks: list[str]) -> list:
        """The tokens with every label phrase replaced by its mention unit (a tuple): at each
        position the longest phrase wins, and its words are used up."""
        index = self._index
        units: list = []
        i, n = 0, len(toks)
        while i < n:
            w = toks[i]
            cands = index.get(w)
            if cands:
                for words, k, unit in cands:
                    if k == 1 or toks[i:i + k] == words:
                        units.append(unit)
                        i += k
                        break
                else:
                    units.append(w)
                    i += 1
            else:
                units.append(w)
                i += 1
        return units

    def parse(self, answer: str) -> ParsedAnswer:
        """Map free text to labels, negations read as absence (see the module docstring)."""
        units = self._mentions(_tokens(_unjson(extract_answer_text(answer))))
        neg = _polarity(units)
        pos_labels: list[str] = []
        neg_labels: list[str] = []
        for u, negated in zip(units, neg):
            if type(u) is tuple:
                (neg_labels if negated else pos_labels).append(u[0])
        ordered = list(dict.fromkeys(pos_labels))
        if not self.multi_label:
            ordered = ordered[:1]
        negated_only = tuple(lab for lab in dict.fromkeys(neg_labels) if lab not in pos_labels)
        unmapped = _unmapped(units, neg)
        return ParsedAnswer(labels=tuple(ordered), unmapped=unmapped, empty=not ordered and not unmapped,
                            negated=negated_only)

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


# -- polarity ----------------------------------------------------------------------------------------


def _is_cue(units: list, j: int) -> bool:
    """Whether the word at j is a negation cue here."""
    w = units[j]
    nxt = units[j + 1] if j + 1 < len(units) else None
    if w in _NEG:
        if w == "not" and nxt in _NOT_HEDGE:
            return False
        return not (w == "no" and nxt == "doubt")
    # "rather than X", "instead of X", "free of X": X is what the answer is not.
    return (w == "rather" and nxt == "than") or (w in _NEG_OF and nxt == "of")


def _label_before(units: list, j: int, start: int) -> int | None:
    """Index of a label just before j, over bridge words only ("trucks are not", "truck: no")."""
    k = j - 1
    while k >= start:
        u = units[k]
        if type(u) is tuple:
            return k
        if u not in _BRIDGE:
            return None
        k -= 1
    return None


def _label_after(units: list, j: int) -> bool:
    """Whether a label follows j over articles only ("is not a truck")."""
    k = j + 1
    if k < len(units) and (units[j] == "rather" or units[j] in _NEG_OF):
        k += 1  # than / of
    while k < len(units):
        u = units[k]
        if type(u) is tuple:
            return True
        if u not in _FWD_SKIP:
            return False
        k += 1
    return False


def _post_ok(units: list, j: int) -> bool:
    """Whether what follows the negation at j lets it deny a label before it: the end of the
    item, or a predicate ("not visible", "none present", "absent from ...")."""
    k = j + 1
    while k < len(units) and units[k] in _ADVERB:
        k += 1
    if k >= len(units):
        return True
    u = units[k]
    return type(u) is not tuple and (not u[0].isalnum() or u in _POST_PRED)


def _negate_before(units: list, neg: list[bool], k: int, start: int) -> None:
    """A negation after the label at k: negate it, and the list it ends when the list opens the
    sentence ("Trucks, buses and trailers are not visible"); after other words ("I see a car
    and trucks are not present") only the last item."""
    s = k
    while s - 1 >= start and (type(units[s - 1]) is tuple or units[s - 1] in _LIST or
                              (isinstance(units[s - 1], str) and units[s - 1].isdigit())):
        s -= 1
    opens = s == start or units[s - 1] in _BREAK or units[s - 1] == ":"
    if not opens:
        last_coord = max((i for i in range(s, k) if units[i] in (",", "and", "or", "nor")), default=s - 1)
        s = last_coord + 1
    for i in range(s, k + 1):
        if type(units[i]) is tuple and len(units[i]) == 1:
            neg[i] = True


def _or_list_follows(units: list, j: int) -> bool:
    """Whether an "or" / "nor" follows j in the same sentence, before a contrast word."""
    for k in range(j + 1, len(units)):
        u = units[k]
        if u == "or" or u == "nor":
            return True
        if u in _HARD or u in _BREAK:
            return False
    return False


def _header_lines(units: list) -> dict[int, bool]:
    """Index of the line end closing each header line (a line ending with ':' that names no
    label and is no table row) -> whether the header holds a negation ("Not present:")."""
    out: dict[int, bool] = {}
    line_start = 0
    for j, u in enumerate(units):
        if u == "\n" or u == "\n\n":
            if (j > line_start and units[j - 1] == ":" and units[line_start] != ":" and
                    not any(type(units[i]) is tuple for i in range(line_start, j))):
                out[j] = any(isinstance(units[i], str) and _is_cue(units, i) for i in range(line_start, j))
            line_start = j + 1
    return out


def _polarity(units: list) -> list[bool]:
    """For each unit, whether it lies in a negation (labels: whether the label is denied)."""
    n = len(units)
    neg = [False] * n
    headers = _header_lines(units) if ":" in units else {}
    scope = False  # a negation before labels is open
    negated_any = False  # the open scope has negated a label
    listed = False  # a comma / "and" since the scope opened
    cue = ""  # the word that opened it
    item = False  # it opened as one item of a comma list
    section_neg = False  # under a negative header line
    section_lines = 0
    clause = 0  # first unit of the current sentence / line
    line_start = 0
    for j in range(n):
        u = units[j]
        if type(u) is tuple:
            if scope and len(u) == 1:
                neg[j] = True
                negated_any = True
            continue
        if u in _HARD:
            scope = False
            if u != ".":
                if j in headers:
                    section_neg, section_lines = headers[j], 0
                elif u == "\n\n" and section_lines:
                    section_neg = False
                elif j > line_start:
                    section_lines += 1
                if section_neg:
                    scope, negated_any, listed, cue, item = True, False, False, ":", False
                line_start = j + 1
            clause = j + 1
            continue
        if scope:
            neg[j] = True
        if u in _NEG or u == "rather" or u in _NEG_OF or u in _NEG_VALUE:
            if u in _NEG_VALUE:
                k = _label_before(units, j, clause)
                if k is not None and units[j - 1] in (":", "("):
                    _negate_before(units, neg, k, clause)
                    neg[j] = True
                continue
            if not _is_cue(units, j):
                if u == "instead":
                    scope = False  # "instead" alone is a contrast
                continue
            neg[j] = True
            nxt = units[j + 1] if j + 1 < n else None
            k = _label_before(units, j, clause)
            if k is not None and not _label_after(units, j) and _post_ok(units, j):
                _negate_before(units, neg, k, clause)  # "truck: no", "trucks are not present"
                continue
            if u == "no" and (nxt is None or nxt in _HARD or nxt in (",", ")")):
                continue  # "No, there are cars": an interjection
            scope, negated_any, listed, cue = True, False, False, u
            # "car, truck, no bus, pedestrian": a negation that is one item of a comma list
            # denies that item only; unless an "or" closes a list it heads ("a car, no trucks,
            # buses or trailers").
            item = j > clause and units[j - 1] == "," and not _or_list_follows(units, j)
            continue
        if not scope:
            continue
        if u in _BREAK or (u == "other" and j + 1 < n and units[j + 1] == "than"):
            scope = False
            neg[j] = False
        elif u == "," and item:
            scope = False
            neg[j] = False
        elif u == "," or u == "and":
            listed = True
            nxt = units[j + 1] if j + 1 < n else None
            if isinstance(nxt, str) and (nxt in _QUANT or nxt.isdigit() or
                                         (cue == "no" and nxt in ("a", "an", "one"))):
                scope = False  # "no trucks and two buses"; after "no" also "no animals, a car"
        elif u in _RESET and (negated_any or listed):
            scope = False
            neg[j] = False
    return neg


def _unmapped(units: list, neg: list[bool]) -> tuple[str, ...]:
    """Answer items (split at , ; . lines, "and", "or") that name no label, say nothing negated and
    are not an explicit "nothing"."""
    out: list[str] = []
    words: list[str] = []
    skip = False  # the item holds a label or a negation
    prev = None
    for u, ng in zip([*units, "\n"], [*neg, False]):
        if type(u) is tuple or ng:
            skip = True
        elif u in _HARD or u in (",", "and", "or", "nor"):
            if u in _HARD and prev == ":":
                skip = True  # a header line ("Present:", "Here is what I see:")
            if words and not skip:
                item = " ".join(words)
                if item not in _EMPTY_ITEMS and not _EMPTY_WORDS.search(" " + item + " "):
                    out.append(item)
            words, skip = [], False
        elif u[0].isalnum():
            words.append(u)
        prev = u
    return tuple(out)
