"""Grounding: the prompt that asks an LVLM for its answer and ROIs, and the parser of its reply.

One home for both (method.md §1: the LVLM's reply holds an <answer> and one ROI per detected
object, in the frame's original pixels).

Coordinate conventions (`coords`):
- "qwen_abs": absolute pixels of the image the model saw after its resize (Qwen2.5-VL and its
  fine-tunes such as VLM-R1). Mapped back by the resize ratio, which needs `resized_size`
  (e.g. from `qwen_resized_size`).
- "norm1000": 0-1000 relative coordinates (Qwen2-VL, Qwen3-VL and a safe ask for other models).
- "norm1": 0-1 relative coordinates.
- "abs": already original pixels.

The parser is forgiving, because replies are: JSON in a ```json fence, bare JSON, JSON cut off by
the token limit (every complete box is kept), VLM-R1's `<think>...</think><answer>...</answer>`
(the last answer wins), the paper's `<ROI>(label, x1, y1, x2, y2)</ROI>`, or no boxes at all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from edgevlm_eval.core.labels import LabelSpace, extract_answer_text
from edgevlm_eval.core.types import Box, largest_per_label

COORDS = ("qwen_abs", "norm1000", "norm1", "abs")

_COORD_WORDS = {
    "qwen_abs": "in pixels of the image",
    "abs": "in pixels of the image",
    "norm1000": "normalised to 0-1000 (0,0 is the top-left corner, 1000,1000 the bottom-right)",
    "norm1": "normalised to 0-1 (0,0 is the top-left corner, 1,1 the bottom-right)",
}

_NUM = r"-?\d+(?:\.\d+)?"
_OBJ = re.compile(r"\{[^{}]*\}|\{[^{}]*$")  # flat JSON objects, the last one possibly cut off
_BOX_KEY = re.compile(r'["\']?(?:bbox_2d|bbox2d|bbox|box|box_2d)["\']?\s*:\s*\[\s*(' + _NUM + r')\s*,\s*(' + _NUM
                      + r')\s*,\s*(' + _NUM + r')\s*,\s*(' + _NUM + r')\s*\]')
_LABEL_KEY = re.compile(r'["\']?(?:label|name|category|class|object)["\']?\s*:\s*["\']([^"\']*)["\']')
_ROI_TAG = re.compile(r"<ROI>\s*\(?\s*([^,<>()]+?)\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM
                      + r")\s*,\s*(" + _NUM + r")\s*\)?\s*(?:</ROI>|$)", re.I)
_FENCE_BLOCK = re.compile(r"```[a-zA-Z]*\s*.*?(?:```|$)", re.S)
_JSON_LIST = re.compile(r"\[\s*\{.*?(?:\}\s*\]|$)", re.S)
_ROI_BLOCK = re.compile(r"<ROI>.*?(?:</ROI>|$)", re.S | re.I)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)


def grounding_prompt(query: str, coords: str = "qwen_abs") -> str:
    """The query plus the instruction to answer and to locate what was named."""
    if coords not in COORDS:
        raise ValueError(f"grounding coords must be one of {COORDS}, got {coords!r}")
    return (
        f"{query}\n"
        "First give your answer inside <answer></answer>. Then locate every object you named: output a JSON list "
        '```json\n[{"bbox_2d": [x1, y1, x2, y2], "label": "name"}]\n``` '
        f"with one box per object, coordinates {_COORD_WORDS[coords]}. If nothing is present, output []."
    )


# Qwen2.5-VL: one merged visual token per 28x28 px cell. The public checkpoints' preprocessor limits:
# at least 4 cells, at most 16384 cells (a 1600x900 frame becomes 1596x896 = 1824 tokens).
QWEN_CELL = 28
QWEN_MIN_PIXELS = 4 * QWEN_CELL * QWEN_CELL  # 3136
QWEN_MAX_PIXELS = 16384 * QWEN_CELL * QWEN_CELL  # 12845056


def qwen_resized_size(width: int, height: int, min_pixels: int = QWEN_MIN_PIXELS, max_pixels: int = QWEN_MAX_PIXELS,
                      factor: int = QWEN_CELL) -> tuple[int, int]:
    """(width, height) Qwen2.5-VL resizes an image to (its `smart_resize`)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(w), int(h)


@dataclass(frozen=True)
class GroundingResult:
    answer: str  # the answer text (without boxes, tags, fences)
    boxes: tuple[Box, ...]  # original pixels, largest per label
    raw_boxes: int  # boxes found before clipping/dedup
    labels: tuple[str, ...] = ()  # canonical labels of the answer, when a label space was given
    unmapped: tuple[str, ...] = ()  # box labels that map to no label of the space


def _raw_boxes(text: str) -> list[tuple[str, list[float]]]:
    found = []
    for m in _OBJ.finditer(text):
        obj = m.group(0)
        b = _BOX_KEY.search(obj)
        if not b:
            continue
        lab = _LABEL_KEY.search(obj)
        found.append(((lab.group(1) if lab else "").strip(), [float(v) for v in b.groups()]))
    for m in _ROI_TAG.finditer(text):
        found.append((m.group(1).strip().strip("'\""), [float(v) for v in m.groups()[1:]]))
    return found


def _answer_text(text: str) -> str:
    tags = _ANSWER_TAG.findall(text)
    body = tags[-1] if tags else text
    body = _FENCE_BLOCK.sub(" ", body)
    body = _JSON_LIST.sub(" ", body)
    body = _ROI_BLOCK.sub(" ", body)
    body = extract_answer_text(body)  # drops <think> when no answer tag
    return " ".join(body.split()).strip(" ,;")


def to_original(xyxy: Sequence[float], coords: str, orig_size: tuple[int, int],
                resized_size: tuple[int, int] | None = None) -> tuple[float, float, float, float] | None:
    """Map a box from the model's convention to original pixels, ordered and clipped; None if empty."""
    w, h = orig_size
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    if coords == "qwen_abs":
        if resized_size is None:
            raise ValueError("coords 'qwen_abs' needs the resized image size")
        sx, sy = w / resized_size[0], h / resized_size[1]
    elif coords == "norm1000":
        sx, sy = w / 1000.0, h / 1000.0
    elif coords == "norm1":
        sx, sy = float(w), float(h)
    elif coords == "abs":
        sx = sy = 1.0
    else:
        raise ValueError(f"grounding coords must be one of {COORDS}, got {coords!r}")
    x1, x2 = sorted((x1 * sx, x2 * sx))
    y1, y2 = sorted((y1 * sy, y2 * sy))
    x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
    y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def parse_grounding(text: str, orig_size: tuple[int, int], coords: str = "qwen_abs",
                    resized_size: tuple[int, int] | None = None,
                    label_space: LabelSpace | None = None) -> GroundingResult:
    """Answer text and ROIs (original pixels, largest per label) of a grounding reply.

    With a label space, box labels are mapped to its canonical labels (boxes whose label maps to
    nothing are dropped and listed in `unmapped`) and the answer is parsed to labels; when the
    answer names nothing but boxes were given, the boxes' labels are the answer's labels."""
    text = text or ""
    raw = _raw_boxes(text)
    boxes: list[Box] = []
    unmapped: list[str] = []
    for label, xyxy in raw:
        if label_space is not None:
            parsed = label_space.parse(label)
            if not parsed.labels:
                unmapped.append(label)
                continue
            label = parsed.labels[0]
        xy = to_original(xyxy, coords, orig_size, resized_size)
        if xy is not None:
            boxes.append(Box(label, *xy))
    boxes_t = largest_per_label(boxes)
    answer = _answer_text(text)
    labels: tuple[str, ...] = ()
    if label_space is not None:
        labels = label_space.parse(answer).labels if answer else ()
        if not labels:
            labels = tuple(dict.fromkeys(b.label for b in boxes_t))
    if not answer and boxes_t:
        answer = ", ".join(dict.fromkeys(b.label for b in boxes_t))
    return GroundingResult(answer=answer, boxes=boxes_t, raw_boxes=len(raw), labels=labels, unmapped=tuple(unmapped))


def map_to_space(boxes: Sequence[Box], space: LabelSpace) -> tuple[Box, ...]:
    """Boxes with free-text labels -> canonical labels of `space` (unmappable dropped), largest per label."""
    out = []
    for b in boxes:
        labels = space.parse(b.label).labels
        if labels:
            out.append(Box(labels[0], b.x1, b.y1, b.x2, b.y2))
    return largest_per_label(out)
