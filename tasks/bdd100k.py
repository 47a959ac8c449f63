"""BDD100K MOT (box tracking) -> Streams: one stream per video, 5 Hz labels sampled to the task's fps.

On disk (the official release):

    <root>/images/track/{train,val,test}/<video>/<video>-0000001.jpg   (1-based, 7 digits, 1280x720)
    <root>/labels/box_track_20/{train,val}/<video>.json                 (Scalabel, one file per video)

A label file is a list of frame records (or a Scalabel dataset `{"frames": [...]}`), 5 Hz:
current format `name`, `videoName`, `frameIndex` (0-based), `labels[]` with `category`,
`attributes {occluded, truncated, crowd}`, `box2d {x1, y1, x2, y2}`; the 2020 release spells these
`video_name`, `index`, `Occluded`/`Truncated`/`Crowd`. Both are read with plain JSON (the scalabel
library needs pydantic < 2). A single combined file `labels/box_track_20/<split>.json` holding the
frames of many videos is read too, grouped by video name.

Categories: the files use the 8 official MOT classes plus 3 that the official evaluation ignores
(other person, other vehicle, trailer), 11 in all; the paper evaluates 10. `category_policy`
(see bdd100k_mot.yaml) says how raw categories become labels; detection-only classes some 2020
files carry (traffic light, traffic sign) are no MOT objects and are skipped.

Images are not opened here: a missing image is reported per frame at run time by the engine.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.io import read_text
from edgevlm_eval.core.sampling import sample_timestamps
from edgevlm_eval.core.types import Box, Stream

from . import ConvertContext, Converter, register_converter

SOURCE_HZ = 5.0  # BDD100K MOT annotates every 6th frame of the 30 fps video
OFFICIAL8 = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
IGNORED3 = ("other person", "other vehicle", "trailer")
RAW11 = OFFICIAL8 + IGNORED3
# bdd100k/configs/box_track.toml: [ignored_mapping] (used by the official evaluation) and
# [name_mapping] (old spellings folded into the official names).
IGNORED_MAPPING = {"other person": "pedestrian", "other vehicle": "car", "trailer": "truck"}
NAME_MAPPING = {"bike": "bicycle", "caravan": "car", "motor": "motorcycle", "person": "pedestrian", "van": "car"}
NOT_MOT = {"traffic light", "traffic sign"}

# raw category -> label, per policy (a category missing from a table is dropped).
POLICIES: dict[str, dict[str, str]] = {
    # The paper's 10: "other vehicle" stays (its Fig. 6 answers list it), "other person" is merged
    # into pedestrian as the official ignore mapping does (a person is what a VLM would call it).
    "paper10": {**{c: c for c in RAW11}, "other person": "pedestrian"},
    "raw11": {c: c for c in RAW11},
    "official8": {**{c: c for c in OFFICIAL8}, **IGNORED_MAPPING},
}
CROWD_MODES = ("keep", "drop")


@dataclass(frozen=True)
class _Record:
    """One annotated source frame."""

    video: str
    frame_index: int
    name: str | None
    labels: list[dict]


def _get(d: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return default


@register_converter
class BDD100KMOT(Converter):
    name = "bdd100k_mot"
    version = "1"
    layout = ("<root>/labels/box_track_20/{train,val}/<video>.json (Scalabel per-video JSON, 5 Hz) "
              "and <root>/images/track/{train,val,test}/<video>/<video>-0000001.jpg")
    options = {
        "category_policy": "paper10",  # paper10 | raw11 | official8
        "crowd": "keep",  # keep | drop boxes whose crowd attribute is true
        "min_box_area": 0.0,  # boxes smaller than this (pixels^2) are dropped
        "labels_dir": "labels/box_track_20",  # relative to the root
        "images_dir": "images/track",  # relative to the root
    }

    # -- files ----------------------------------------------------------------------------------

    def _split(self, ctx: ConvertContext) -> str:
        return str(ctx.task.dataset.get("split") or "val")

    def _root(self, ctx: ConvertContext) -> Path:
        if ctx.root is None:
            raise DatasetError("BDD100K MOT: the converter reads a dataset root (dataset.required must not be false)",
                               expected=self.layout)
        for key in ("labels_dir", "images_dir"):
            v = ctx.options[key]
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"expected a folder under the root, got {v!r}", path=ctx.task.source,
                                  key=f"converter_options.{key}")
        return Path(ctx.root)

    def _label_files(self, ctx: ConvertContext) -> list[Path]:
        base = self._root(ctx) / ctx.options["labels_dir"]
        split = self._split(ctx)
        folder, combined = base / split, base / f"{split}.json"
        if folder.is_dir():
            files = sorted(folder.glob("*.json"))
            if not files:
                raise DatasetError(f"BDD100K MOT: no label files (*.json) for split '{split}'",
                                   path=str(folder), expected=self.layout)
            return files
        if combined.is_file():
            return [combined]
        raise DatasetError(f"BDD100K MOT: label folder for split '{split}' not found",
                           path=str(folder), expected=self.layout)

    def inputs(self, ctx: ConvertContext) -> list[Path]:
        try:
            return self._label_files(ctx)
        except (DatasetError, ConfigError):
            return []  # convert() raises the error with its context

    # -- options --------------------------------------------------------------------------------

    def _check_options(self, ctx: ConvertContext) -> dict[str, str]:
        opts, src = ctx.options, ctx.task.source
        policy = opts["category_policy"]
        if not isinstance(policy, str) or policy not in POLICIES:
            raise ConfigError(f"unknown category_policy {policy!r}; known: {', '.join(POLICIES)}",
                              path=src, key="converter_options.category_policy")
        if not isinstance(opts["crowd"], str) or opts["crowd"] not in CROWD_MODES:
            raise ConfigError(f"expected one of {', '.join(CROWD_MODES)}, got {opts['crowd']!r}",
                              path=src, key="converter_options.crowd")
        area = opts["min_box_area"]
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not math.isfinite(area) or area < 0:
            raise ConfigError(f"expected a finite number >= 0 (square pixels), got {area!r}",
                              path=src, key="converter_options.min_box_area")
        mapping = POLICIES[policy]
        # The policy's labels must be the task's label space, or frames would fail the label
        # check (or the query would list classes that never occur) with a less useful message.
        produced = set(mapping.values())
        names = set(ctx.task.label_space.names)
        if produced != names:
            raise ConfigError(
                f"category_policy {policy!r} produces labels {sorted(produced)}, but the label space is "
                f"{sorted(names)} (missing: {sorted(produced - names)}, never produced: {sorted(names - produced)})",
                path=src, key="label_space.labels")
        return mapping

    # -- reading --------------------------------------------------------------------------------

    def _read(self, path: Path, combined: bool) -> list[_Record]:
        try:
            data = json.loads(read_text(path, what="BDD100K MOT label file", expected=self.layout))
        except json.JSONDecodeError as e:
            raise DatasetError(f"BDD100K MOT: malformed JSON (line {e.lineno}, column {e.colno}): {e.msg}",
                               path=str(path), expected=self.layout) from None
        if isinstance(data, dict) and isinstance(data.get("frames"), list):
            data = data["frames"]  # a Scalabel Dataset object
        if not isinstance(data, list):
            raise DatasetError(f"BDD100K MOT: expected a list of frame records, got {type(data).__name__}",
                               path=str(path), expected=self.layout)
        if not data:
            raise DatasetError("BDD100K MOT: the label file holds no frame records", path=str(path),
                               expected=self.layout)
        out = []
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DatasetError(f"BDD100K MOT: frame record {i} is a {type(rec).__name__}, not an object",
                                   path=str(path), expected=self.layout)
            idx = _get(rec, "frameIndex", "index")
            if idx is None:
                raise DatasetError(f"BDD100K MOT: frame record {i} (name {rec.get('name')!r}) has no "
                                   "'frameIndex' key (nor the 2020 format's 'index')",
                                   path=str(path), expected=self.layout)
            if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                raise DatasetError(f"BDD100K MOT: frame record {i}: 'frameIndex' must be an integer >= 0, "
                                   f"got {idx!r}", path=str(path), expected=self.layout)
            video = _get(rec, "videoName", "video_name")
            if video is None:
                # Per-video files are named after the video; a combined file must say.
                if combined:
                    raise DatasetError(f"BDD100K MOT: frame record {i} has no 'videoName' key (nor the 2020 "
                                       "format's 'video_name')", path=str(path), expected=self.layout)
                video = path.stem
            labels = rec.get("labels") or []
            if not isinstance(labels, list):
                raise DatasetError(f"BDD100K MOT: frame record {i}: 'labels' must be a list",
                                   path=str(path), expected=self.layout)
            out.append(_Record(str(video), idx, rec.get("name"), labels))
        return out

    def _frame_objects(self, rec: _Record, path: Path, mapping: dict[str, str], opts: dict
                       ) -> tuple[set[str], list[Box]]:
        """The frame's labels (label-space order) and its boxes after the category policy."""
        present: set[str] = set()
        boxes: list[Box] = []
        for k, lab in enumerate(rec.labels):
            cat = lab.get("category") if isinstance(lab, dict) else None
            if not isinstance(cat, str):
                raise DatasetError(f"BDD100K MOT: frame {rec.frame_index} label {k} has no 'category'",
                                   path=str(path), expected=self.layout)
            cat = NAME_MAPPING.get(cat, cat)
            if cat in NOT_MOT:
                continue
            if cat not in RAW11:
                raise DatasetError(f"BDD100K MOT: frame {rec.frame_index} label {k}: unknown category {cat!r}; "
                                   f"known: {', '.join(RAW11)}", path=str(path))
            label = mapping.get(cat)
            if label is None:
                continue
            attrs = lab.get("attributes") or {}
            if opts["crowd"] == "drop" and bool(_get(attrs, "crowd", "Crowd", default=False)):
                continue
            b = lab.get("box2d")
            box = None
            if isinstance(b, dict):
                try:
                    box = Box(label, float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"]))
                    if any(isinstance(b[c], bool) for c in ("x1", "y1", "x2", "y2")):
                        raise TypeError
                except (KeyError, TypeError, ValueError):
                    raise DatasetError(f"BDD100K MOT: frame {rec.frame_index} label {k}: box2d needs numeric "
                                       f"x1, y1, x2, y2, got {b!r}", path=str(path)) from None
                if not all(math.isfinite(v) for v in (box.x1, box.y1, box.x2, box.y2)) \
                        or box.x2 < box.x1 or box.y2 < box.y1:
                    raise DatasetError(f"BDD100K MOT: frame {rec.frame_index} label {k}: box2d must be finite with "
                                       f"x1 <= x2 and y1 <= y2, got {b!r}", path=str(path))
            if opts["min_box_area"] and (box is None or box.area < float(opts["min_box_area"])):
                continue
            present.add(label)
            if box is not None:
                boxes.append(box)
        return present, boxes

    # -- converting -----------------------------------------------------------------------------

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        mapping = self._check_options(ctx)
        split = self._split(ctx)
        files = self._label_files(ctx)
        order = ctx.task.label_space.names
        images = self._root(ctx) / ctx.options["images_dir"] / split
        by_video: dict[str, list[tuple[_Record, Path]]] = defaultdict(list)
        combined = len(files) == 1 and files[0].parent == self._root(ctx) / ctx.options["labels_dir"]
        for path in files:
            for rec in self._read(path, combined):
                by_video[rec.video].append((rec, path))
        streams = []
        for video in sorted(by_video):
            recs = sorted(by_video[video], key=lambda rp: rp[0].frame_index)
            for (a, pa), (b, _) in zip(recs, recs[1:]):
                if a.frame_index == b.frame_index:
                    raise DatasetError(f"BDD100K MOT: video {video} has two records with frameIndex "
                                       f"{a.frame_index}", path=str(pa))
            # 5 Hz: frameIndex / 5 seconds; sample_timestamps skips a target whose frame is missing.
            picks = sample_timestamps([r.frame_index / SOURCE_HZ for r, _ in recs], ctx.task.fps)
            frames = []
            for k, (t, j) in enumerate(picks):
                rec, path = recs[j]
                present, boxes = self._frame_objects(rec, path, mapping, ctx.options)
                name = rec.name or f"{video}-{rec.frame_index + 1:07d}.jpg"
                # `name` is the file name inside the video folder (older files may carry a path).
                image = images / name if "/" in name else images / video / name
                frames.append(ctx.frame(video, k, t / ctx.task.fps, [image],
                                        [lab for lab in order if lab in present], boxes=boxes,
                                        meta={"frame_index": rec.frame_index}))
            ctx.advance(len(frames))
            streams.append(Stream(id=video, task=ctx.task.name, fps=ctx.task.fps, frames=frames,
                                  meta={"source_frames": len(recs), "source_hz": SOURCE_HZ, "split": split}))
        return streams
