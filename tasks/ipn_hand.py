"""IPN Hand -> Streams: one stream per video, 30 fps segment labels sampled to the task's fps
(paper: 2 FPS, two images per query).

On disk:

    <root>/frames/<video>/<video>_000001.jpg        (1-based, 6 digits, 640x480 at 30 fps)

and the annotations in either of the two forms the dataset comes with:

- the dataset's own CSV lists `<root>/annotations/Annot_List.txt` (all 200 videos, with a header
  `video,label,id,t_start,t_end,frames`), `Annot_TrainList.txt` (148) and `Annot_TestList.txt` (52);
- the authors' code lists (GibranBenitez/IPN-hand, `annotation_ipnGesture/`): `trainlistall.txt` /
  `vallistall.txt` rows `./frames/<video> <class_id> <t_start> <t_end>`, with `classIndAll.txt`
  (`<class_id> <code>`) beside them.

Frames are 1-based and segments inclusive; they tile each video from frame 1, so a video's
length is its last segment's end. Video names contain '#'. Images are not opened here: a missing
image is reported per frame at run time by the engine.

Sampling: source frame j (0-based) is at j / 30 s; `sample_regular` keeps j = 0, 15, 30, ... at
2 FPS. A sampled frame's label is the gesture of the segment holding it. Each query sends two
images, the previous sampled frame and the current one; frame 0 has no previous frame and sends
its own image twice (the task's image count stays fixed, and "no motion yet" is what a viewer of
the stream start would see).
"""

from __future__ import annotations

import bisect
import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.io import read_text
from edgevlm_eval.core.sampling import sample_regular
from edgevlm_eval.core.types import Stream

from . import ConvertContext, Converter, register_converter

SOURCE_FPS = 30.0
MAX_SOURCE_FRAMES = int(24 * 3600 * SOURCE_FPS)
# (class id, code, name): the IPN Hand paper's table (README of GibranBenitez/IPN-hand).
IPN_CLASSES: tuple[tuple[int, str, str], ...] = (
    (1, "D0X", "non-gesture"),
    (2, "B0A", "pointing with one finger"),
    (3, "B0B", "pointing with two fingers"),
    (4, "G01", "click with one finger"),
    (5, "G02", "click with two fingers"),
    (6, "G03", "throw up"),
    (7, "G04", "throw down"),
    (8, "G05", "throw left"),
    (9, "G06", "throw right"),
    (10, "G07", "open twice"),
    (11, "G08", "double click with one finger"),
    (12, "G09", "double click with two fingers"),
    (13, "G10", "zoom in"),
    (14, "G11", "zoom out"),
)
CODE_TO_NAME = {code: name for _, code, name in IPN_CLASSES}
STANDARD_IDS = {cid: code for cid, code, _ in IPN_CLASSES}
CSV_HEADER = ("video", "label", "id", "t_start", "t_end", "frames")

# split -> candidate annotation files (relative to the root), first found wins.
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("annotations/Annot_TrainList.txt", "annotation_ipnGesture/trainlistall.txt",
              "annotations/trainlistall.txt", "trainlistall.txt"),
    "test": ("annotations/Annot_TestList.txt", "annotation_ipnGesture/vallistall.txt",
             "annotations/vallistall.txt", "vallistall.txt"),
    "all": ("annotations/Annot_List.txt",),  # else train + test
}


@dataclass(frozen=True)
class Segment:
    video: str
    code: str
    start: int  # 1-based, inclusive
    end: int
    path: str
    line: int


def _int(text: str, what: str, path: Path, line: int, layout: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise DatasetError(f"IPN Hand: line {line}: {what} must be an integer, got {text.strip()!r}",
                           path=str(path), expected=layout) from None


@register_converter
class IPNHand(Converter):
    name = "ipn_hand"
    version = "1"
    layout = ("<root>/frames/<video>/<video>_000001.jpg (30 fps) with <root>/annotations/Annot_{Train,Test}List.txt "
              "or Annot_List.txt (CSV: video,label,id,t_start,t_end,frames), or the authors' lists "
              "<root>/annotation_ipnGesture/{trainlistall,vallistall}.txt ('./frames/<video> <class_id> <t_start> "
              "<t_end>') with classIndAll.txt")
    options = {
        "annotation_file": None,  # a file or list of files (relative to the root); default: by split
        "class_index_file": None,  # classIndAll.txt for the list format; default: beside the list
        "frames_dir": "frames",
    }

    # -- files ----------------------------------------------------------------------------------

    def _split(self, ctx: ConvertContext) -> str:
        return str(ctx.task.dataset.get("split") or "test")

    def _root(self, ctx: ConvertContext) -> Path:
        """The dataset root, with the options that name paths under it checked."""
        if ctx.root is None:
            raise DatasetError("IPN Hand: the converter reads a dataset root (dataset.required must not be false)",
                               expected=self.layout)
        o, src = ctx.options, ctx.task.source

        def name(v) -> bool:
            return isinstance(v, str) and bool(v.strip())

        given = o.get("annotation_file")
        if given is not None and not (name(given) or isinstance(given, list) and given and all(map(name, given))):
            raise ConfigError(f"expected a file name under the root or a list of them, got {given!r}", path=src,
                              key="converter_options.annotation_file")
        if o.get("class_index_file") is not None and not name(o["class_index_file"]):
            raise ConfigError(f"expected a file name under the root, got {o['class_index_file']!r}", path=src,
                              key="converter_options.class_index_file")
        if not name(o.get("frames_dir")):
            raise ConfigError(f"expected a folder name under the root, got {o.get('frames_dir')!r}", path=src,
                              key="converter_options.frames_dir")
        return Path(ctx.root)

    def _annotation_files(self, ctx: ConvertContext) -> list[Path]:
        root = self._root(ctx)
        given = ctx.options.get("annotation_file")
        if given:
            files = [root / p for p in ([given] if isinstance(given, str) else given)]
            for f in files:
                if not f.is_file():
                    raise DatasetError("IPN Hand: annotation file (converter_options.annotation_file) not found",
                                       path=str(f), expected=self.layout)
            return files
        split = self._split(ctx)
        if split not in SPLIT_FILES:
            raise ConfigError(f"unknown split {split!r}; known: {', '.join(SPLIT_FILES)}",
                              path=ctx.task.source, key="dataset.split")

        def first(cands: tuple[str, ...]) -> Path | None:
            return next((root / c for c in cands if (root / c).is_file()), None)

        found = first(SPLIT_FILES[split])
        if found:
            return [found]
        if split == "all":
            parts = [first(SPLIT_FILES["train"]), first(SPLIT_FILES["test"])]
            if all(parts):
                return parts  # type: ignore[return-value]
        tried = ", ".join(str(root / c) for c in SPLIT_FILES[split])
        raise DatasetError(f"IPN Hand: no annotation file for split '{split}' (tried {tried})",
                           path=str(root), expected=self.layout)

    def _class_index_file(self, ctx: ConvertContext, list_file: Path) -> Path | None:
        given = ctx.options.get("class_index_file")
        if given:
            p = self._root(ctx) / given
            if not p.is_file():
                raise DatasetError("IPN Hand: class index file (converter_options.class_index_file) not found",
                                   path=str(p), expected=self.layout)
            return p
        p = list_file.parent / "classIndAll.txt"
        return p if p.is_file() else None

    def inputs(self, ctx: ConvertContext) -> list[Path]:
        try:
            files = self._annotation_files(ctx)
            extra = [self._class_index_file(ctx, f) for f in files if not self._is_csv(f)]
        except (DatasetError, ConfigError):
            return []  # convert() raises the error with its context
        return files + sorted({p for p in extra if p})

    # -- parsing --------------------------------------------------------------------------------

    def _text(self, path: Path) -> str:
        return read_text(path, what="IPN Hand annotation file", expected=self.layout)

    def _is_csv(self, path: Path) -> bool:
        for line in self._text(path).splitlines():
            if line.strip():
                return "," in line
        return False

    def _read_class_index(self, path: Path | None) -> dict[int, str]:
        """class id -> code. Without a classIndAll.txt the dataset's standard numbering is used."""
        if path is None:
            return dict(STANDARD_IDS)
        out: dict[int, str] = {}
        text = read_text(path, what="IPN Hand class index file", expected="classIndAll.txt rows like '1 D0X'")
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DatasetError(f"IPN Hand: line {n}: expected '<class_id> <code>', got {line.strip()!r}",
                                   path=str(path), expected="classIndAll.txt rows like '1 D0X'")
            cid = _int(parts[0], "the class id", path, n, "classIndAll.txt rows like '1 D0X'")
            if parts[1] not in CODE_TO_NAME:
                raise DatasetError(f"IPN Hand: line {n}: unknown class code {parts[1]!r}; known: "
                                   f"{', '.join(CODE_TO_NAME)}", path=str(path))
            out[cid] = parts[1]
        return out

    def _read_csv(self, path: Path) -> list[Segment]:
        segs = []
        reader = csv.reader(io.StringIO(self._text(path), newline=""))
        try:
            rows = list(reader)
        except csv.Error as e:
            raise DatasetError(f"IPN Hand: line {reader.line_num}: malformed CSV ({e})", path=str(path),
                               expected=self.layout) from None
        for n, row in enumerate(rows, start=1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and row[0].strip().lower() == CSV_HEADER[0]:
                continue
            if len(row) < 5:
                raise DatasetError(f"IPN Hand: line {n}: expected the columns {','.join(CSV_HEADER)}, got "
                                   f"{len(row)} field(s): {','.join(row)!r}", path=str(path), expected=self.layout)
            video, code = row[0].strip(), row[1].strip()
            cid = _int(row[2], "'id' (the class id)", path, n, self.layout)
            if cid not in STANDARD_IDS:
                raise DatasetError(f"IPN Hand: line {n}: unknown class id {cid}; known: 1..{len(IPN_CLASSES)}",
                                   path=str(path))
            if code != STANDARD_IDS[cid]:
                raise DatasetError(f"IPN Hand: line {n}: label {code!r} does not match class id {cid} "
                                   f"({STANDARD_IDS[cid]})", path=str(path))
            start = _int(row[3], "'t_start'", path, n, self.layout)
            end = _int(row[4], "'t_end'", path, n, self.layout)
            segs.append(self._segment(video, code, start, end, path, n))
        return segs

    def _read_list(self, path: Path, classes: dict[int, str]) -> list[Segment]:
        segs = []
        for n, line in enumerate(self._text(path).splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4:
                raise DatasetError(f"IPN Hand: line {n}: expected './frames/<video> <class_id> <t_start> <t_end>', "
                                   f"got {line.strip()!r}", path=str(path), expected=self.layout)
            video = parts[0].rstrip("/").rsplit("/", 1)[-1]
            cid = _int(parts[1], "the class id", path, n, self.layout)
            if cid not in classes:
                raise DatasetError(f"IPN Hand: line {n}: unknown class id {cid}; known: "
                                   f"{', '.join(str(c) for c in sorted(classes))}", path=str(path))
            start = _int(parts[2], "t_start", path, n, self.layout)
            end = _int(parts[3], "t_end", path, n, self.layout)
            segs.append(self._segment(video, classes[cid], start, end, path, n))
        return segs

    def _segment(self, video: str, code: str, start: int, end: int, path: Path, n: int) -> Segment:
        if not video:
            raise DatasetError(f"IPN Hand: line {n}: empty video name", path=str(path), expected=self.layout)
        if start < 1 or end < start:
            raise DatasetError(f"IPN Hand: line {n}: need 1 <= t_start <= t_end (1-based frames), got "
                               f"{start}..{end}", path=str(path), expected=self.layout)
        if end > MAX_SOURCE_FRAMES:
            # a video's length is its last segment's end: a typo here would sample a day-long stream
            raise DatasetError(f"IPN Hand: line {n}: t_end {end} is more than {MAX_SOURCE_FRAMES} frames (24 h at "
                               f"{SOURCE_FPS:g} fps); IPN Hand videos are about 2 minutes", path=str(path),
                               expected=self.layout)
        return Segment(video, code, start, end, str(path), n)

    def read_segments(self, ctx: ConvertContext) -> dict[str, list[Segment]]:
        """video -> its segments, in frame order (checked not to overlap)."""
        by_video: dict[str, list[Segment]] = defaultdict(list)
        for path in self._annotation_files(ctx):
            if self._is_csv(path):
                segs = self._read_csv(path)
            else:
                segs = self._read_list(path, self._read_class_index(self._class_index_file(ctx, path)))
            if not segs:
                raise DatasetError("IPN Hand: the annotation file has no segments", path=str(path),
                                   expected=self.layout)
            for s in segs:
                by_video[s.video].append(s)
        for video, segs in by_video.items():
            segs.sort(key=lambda s: s.start)
            for a, b in zip(segs, segs[1:]):
                if b.start <= a.end:
                    raise DatasetError(f"IPN Hand: line {b.line}: segment {b.start}..{b.end} of {video} overlaps "
                                       f"{a.start}..{a.end} (line {a.line})", path=b.path)
        return dict(by_video)

    # -- converting -----------------------------------------------------------------------------

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        missing = [n for n in CODE_TO_NAME.values() if n not in ctx.task.label_space.names]
        if missing:
            raise ConfigError(f"the IPN Hand converter labels frames with the gesture names {missing}, which the "
                              "label space lacks", path=ctx.task.source, key="label_space.labels")
        if ctx.task.images_per_query not in (1, 2):
            raise ConfigError(f"IPN Hand sends the previous and the current frame (2) or the current frame (1), "
                              f"not {ctx.task.images_per_query}", path=ctx.task.source, key="images_per_query")
        frames_dir = self._root(ctx) / ctx.options["frames_dir"]
        streams = []
        for video, segs in sorted(self.read_segments(ctx).items()):
            n_source = segs[-1].end
            starts = [s.start for s in segs]

            def image(j: int) -> Path:  # 0-based source index -> its 1-based file
                return frames_dir / video / f"{video}_{j + 1:06d}.jpg"

            frames, skipped, prev = [], 0, None
            for t, j in enumerate(sample_regular(n_source, SOURCE_FPS, ctx.task.fps)):
                i = bisect.bisect_right(starts, j + 1) - 1
                cur, before, prev = j, prev, j
                if i < 0 or segs[i].end < j + 1:
                    skipped += 1  # a frame no segment covers has no ground truth
                    continue
                pair = [image(cur if before is None else before), image(cur)]
                frames.append(ctx.frame(video, len(frames), t / ctx.task.fps, pair[-ctx.task.images_per_query:],
                                        [CODE_TO_NAME[segs[i].code]],
                                        meta={"source_frame": j + 1, "gesture": segs[i].code}))
            ctx.advance(len(frames))
            meta = {"source_frames": n_source, "source_fps": SOURCE_FPS, "segments": len(segs)}
            if skipped:
                meta["unlabelled_frames_skipped"] = skipped
            streams.append(Stream(id=video, task=ctx.task.name, fps=ctx.task.fps, frames=frames, meta=meta))
        return streams

