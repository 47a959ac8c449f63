"""ACE ("Actions for Cooking Eggs", the ICPR 2012 KSCGR contest) -> Streams: one stream per video,
30 fps per-frame action labels sampled to the task's fps (paper: 1 FPS, 10 test videos).

On disk, one folder per video, either directly under the root or one level down (e.g. the
contest's training and test archives unpacked side by side):

    <root>/<video>/image_jpg/<n>.jpg        (0-based, unpadded: 0.jpg, 1.jpg, ...; 640x480)
    <root>/<video>/labels.txt               (`<frame>\\t<label>` per line)
    or <root>/<any>/<video>/...

Videos: training `<menu>-<actor>` (boild-egg-1, ham-egg-3, kinshi-egg-2, omelette-5,
scrambled-egg-4: note the spelling `boild`), test `test_data_10_0N` and `test_data_11_0N`. The
split is chosen by name: "test" = names starting with `test_data`, "train" = all others, "all".

Labels: 1 breaking, 2 mixing, 3 baking, 4 turning, 5 cutting, 6 boiling, 7 seasoning, 8 peeling,
-1000 none. A line's frame number names the image `<frame>.jpg`. labels.txt may hold one line
fewer than there are images: a frame without a line (the last one) is treated as none, like a
-1000 frame (the annotators gave it no action); lines for frames with no image are ignored (both
are counted in the stream meta). More than one image after the last line means a file cut short:
an error, as is an empty labels.txt.

Sampling: image n is at n / 30 s (the Kinect's 30 fps, assumed: no source states it);
`sample_timestamps` over these times (for a gap-free folder exactly `sample_regular`: images 0,
30, 60, ...) gives frame t at t / fps. A none frame stays in the stream (time and history flow
through it) but is scored only with `score_none: true` (ConvertContext.frame decides).

Images are not opened here: a missing or unreadable image is reported per frame at run time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.io import read_text
from edgevlm_eval.core.sampling import sample_timestamps
from edgevlm_eval.core.types import Stream

from . import ConvertContext, Converter, register_converter

ACTIONS = {1: "breaking", 2: "mixing", 3: "baking", 4: "turning", 5: "cutting", 6: "boiling", 7: "seasoning",
           8: "peeling"}
NONE_CODE = -1000
TEST_PREFIX = "test_data"
SPLITS = ("test", "train", "all")
IMAGE_DIR, LABELS_FILE = "image_jpg", "labels.txt"
_IMAGE = re.compile(r"^(\d+)\.jpg$", re.I)
LAYOUT = ("<root>/<video>/image_jpg/<n>.jpg (0-based, unpadded, 30 fps) and <root>/<video>/labels.txt "
          "('<frame>\\t<label>' lines, label 1..8 or -1000 for none); videos may also sit one level down "
          "(<root>/<any>/<video>/); test videos are named test_data_*")


@dataclass(frozen=True)
class Video:
    name: str
    folder: Path

    @property
    def split(self) -> str:
        return "test" if self.name.startswith(TEST_PREFIX) else "train"


def read_labels(path: Path) -> dict[int, int]:
    """frame number -> label code, from a KSCGR labels.txt."""
    out: dict[int, int] = {}
    expected = "'<frame>\\t<label>' with integers, label 1..8 or -1000"
    text = read_text(path, what="ACE labels file", expected=LAYOUT)  # a BOM is no part of the first frame number
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not all(re.fullmatch(r"-?\d+", p) for p in parts):
            raise DatasetError(f"ACE: line {n}: expected {expected}, got {line.rstrip()!r}", path=str(path),
                               expected=LAYOUT)
        frame, code = int(parts[0]), int(parts[1])
        if code not in ACTIONS and code != NONE_CODE:
            raise DatasetError(f"ACE: line {n}: unknown label {code}; known: 1..8 "
                               f"({', '.join(ACTIONS.values())}) and -1000 (none)", path=str(path),
                               expected=LAYOUT)
        if frame < 0:
            raise DatasetError(f"ACE: line {n}: negative frame number {frame}", path=str(path), expected=LAYOUT)
        if frame in out:
            raise DatasetError(f"ACE: line {n}: frame {frame} is labelled twice", path=str(path), expected=LAYOUT)
        out[frame] = code
    if not out:
        raise DatasetError("ACE: the labels file is empty (expected one line per frame)", path=str(path),
                           expected=LAYOUT)
    return out


@register_converter
class ACE(Converter):
    name = "ace"
    version = "1"
    layout = LAYOUT
    options = {"source_fps": 30.0}

    def _split(self, ctx: ConvertContext) -> str:
        split = str(ctx.task.dataset.get("split") or "test")
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; known: {', '.join(SPLITS)} (test = videos named "
                              f"{TEST_PREFIX}_*, train = the others)", path=ctx.task.source, key="dataset.split")
        return split

    def videos(self, ctx: ConvertContext) -> list[Video]:
        """The videos of the split: folders holding image_jpg/ or labels.txt, at depth 1 or 2."""
        if ctx.root is None:
            raise DatasetError("ACE: the converter reads a dataset root (dataset.required must not be false)",
                               expected=self.layout)
        if not Path(ctx.root).is_dir():
            raise DatasetError("ACE: dataset root is not a folder", path=str(ctx.root), expected=self.layout)
        root = Path(ctx.root).resolve()  # frames carry absolute image paths
        split = self._split(ctx)

        def is_video(d: Path) -> bool:
            return (d / IMAGE_DIR).is_dir() or (d / LABELS_FILE).is_file()

        found: dict[str, Path] = {}
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            for v in ([d] if is_video(d) else sorted(p for p in d.iterdir() if p.is_dir() and is_video(p))):
                if v.name in found:
                    raise DatasetError(f"ACE: video {v.name} found twice: {found[v.name]} and {v}", path=str(v),
                                       expected=self.layout)
                found[v.name] = v
        if not found:
            raise DatasetError("ACE: no video folders (with image_jpg/ and labels.txt) found under the root",
                               path=str(root), expected=self.layout)
        videos = [Video(n, p) for n, p in sorted(found.items()) if split == "all" or Video(n, p).split == split]
        if not videos:
            raise DatasetError(f"ACE: none of the {len(found)} videos found belongs to split '{split}' "
                               f"(found: {', '.join(sorted(found)[:5])}{', ...' if len(found) > 5 else ''})",
                               path=str(root), expected=self.layout)
        return videos

    def inputs(self, ctx: ConvertContext) -> list[Path]:
        try:
            return [v.folder / LABELS_FILE for v in self.videos(ctx)]
        except (DatasetError, ConfigError, OSError):
            return []  # convert() raises the error with its context

    def _check(self, ctx: ConvertContext) -> float:
        space = ctx.task.label_space
        if space.multi_label:
            raise ConfigError("ACE frames have one action each: the label space must be single-label",
                              path=ctx.task.source, key="label_space.multi_label")
        missing = [a for a in ACTIONS.values() if a not in space.names]
        if missing:
            raise ConfigError(f"the ACE converter labels frames with the actions {missing}, which the label space "
                              "lacks", path=ctx.task.source, key="label_space.labels")
        if not space.none_label:
            raise ConfigError("ACE has frames with no action (-1000): set label_space.none_label",
                              path=ctx.task.source, key="label_space.none_label")
        if ctx.task.images_per_query != 1:
            raise ConfigError(f"ACE frames send one image, not {ctx.task.images_per_query}", path=ctx.task.source,
                              key="images_per_query")
        fps = ctx.options["source_fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
            raise ConfigError(f"expected a positive finite number (frames per second), got {fps!r}",
                              path=ctx.task.source,
                              key="converter_options.source_fps")
        return float(fps)

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        source_fps = self._check(ctx)
        none = ctx.task.label_space.none_label
        streams = []
        for video in self.videos(ctx):
            image_dir, labels_file = video.folder / IMAGE_DIR, video.folder / LABELS_FILE
            if not image_dir.is_dir():
                raise DatasetError(f"ACE: video {video.name} has no {IMAGE_DIR}/ folder", path=str(image_dir),
                                   expected=self.layout)
            if not labels_file.is_file():
                raise DatasetError(f"ACE: video {video.name} has no {LABELS_FILE}", path=str(labels_file),
                                   expected=self.layout)
            names: dict[int, str] = {}  # frame number -> file name
            for m in sorted(filter(None, map(_IMAGE.match, (p.name for p in image_dir.iterdir()))), key=lambda m: m[0]):
                n = int(m.group(1))
                if n in names:  # 7.jpg and 007.jpg: which one is frame 7?
                    raise DatasetError(f"ACE: video {video.name}: {names[n]} and {m.group(0)} are both frame {n}",
                                       path=str(image_dir), expected=self.layout)
                names[n] = m.group(0)
            numbers = sorted(names)
            if not numbers:
                raise DatasetError(f"ACE: video {video.name} has no frames (<n>.jpg)", path=str(image_dir),
                                   expected=self.layout)
            codes = read_labels(labels_file)
            # The format leaves at most the last frame without a line; more unlabelled frames at the
            # end means a file cut short, whose frames would silently all become "none".
            trailing = sum(1 for n in numbers if n > max(codes))
            if trailing > 1:
                raise DatasetError(f"ACE: video {video.name}: labels.txt ends at frame {max(codes)} but the images go "
                                   f"on to {numbers[-1]}.jpg: {trailing} frames have no line (at most the last one "
                                   "may lack one); is the file cut short?", path=str(labels_file), expected=self.layout)
            picks = sample_timestamps([n / source_fps for n in numbers], ctx.task.fps)
            frames = []
            for t, j in picks:
                n = numbers[j]
                code = codes.get(n, NONE_CODE)  # no line for this frame: no action annotated
                label = ACTIONS.get(code, none)
                frames.append(ctx.frame(video.name, len(frames), t / ctx.task.fps,
                                        [image_dir / names[n]], [label],
                                        meta={"source_frame": n, "label_code": code if n in codes else None}))
            ctx.advance(len(frames))
            have = set(numbers)
            meta = {"source_frames": len(numbers), "source_fps": source_fps, "split": video.split,
                    "frames_without_label": len(have - set(codes)),
                    "labels_without_frame": len(set(codes) - have)}
            if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                meta["missing_images"] = numbers[-1] - numbers[0] + 1 - len(numbers)
            streams.append(Stream(id=video.name, task=ctx.task.name, fps=ctx.task.fps, frames=frames, meta=meta))
        return streams
