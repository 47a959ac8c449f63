"""The `generic` converter: a task in YAML alone, for data in this layout.

    <root>/frames/<stream>/<image files>     one folder per stream (video); images in name order
    <root>/labels.csv                        columns stream,frame,labels   (or labels.jsonl)

- Images: the files matching `pattern` (default *.jpg, *.jpeg, *.png), sorted by name in natural
  order (digits compare as numbers, so frame2 comes before frame10), are the stream's source
  frames at `source_fps` (default: the task's fps, i.e. every image is a frame). They are
  sampled to the task's fps with the toolkit's one sampling rule (edgevlm_eval.core.sampling).
- labels.csv: a header row, then one row per labelled frame. `frame` names an image of the
  stream's folder (its file name, or its name without extension) or, with `frame_key: index`,
  its 0-based position in name order. `labels` holds the frame's labels separated by
  `label_separator` (default ';'); an empty cell (or 'none') is a frame with no labels.
  Column names can be changed with `columns`. A row with fewer or more fields than the header (a
  missing labels cell, labels split on commas) is an error naming the line: it would otherwise
  read as "no labels" or as the first label only.
- labels.jsonl: one object per line with the same keys; `labels` (required: [] for none) is a
  list of strings (or one string split like the CSV cell) and an optional `boxes` is a list of
  [label, x1, y1, x2, y2] in the image's pixels (the ROIs for visual focus; finite, x1 <= x2,
  y1 <= y2, labels among the frame's).
- Both files are UTF-8 text; another encoding is an error naming the file and the line.
- Labels must be names (or synonyms) of the task's label space; matching folds case, spaces,
  hyphens and underscores ("Traffic_Cone" is "traffic cone"). Anything else is an error naming
  the file, the line and the label. Single-label tasks need exactly one label per frame (an empty
  cell is the space's none_label, when it has one).
- A sampled frame with no row: an error by default (`unlabeled: error`), or left out of the
  stream (`skip`: later frames keep their capture times, so the stream has a gap in time), or
  scored as having no labels (`empty`).
- With `images_per_query: 2` in the task, each query sends the previous sampled frame and the
  current one (like IPN Hand); the first frame sends its own image twice.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.io import read_text
from edgevlm_eval.core.labels import normalize
from edgevlm_eval.core.sampling import sample_regular
from edgevlm_eval.core.types import Box, Stream

from . import ConvertContext, Converter, register_converter

LAYOUT = ("<root>/frames/<stream>/<images, in name order> and <root>/labels.csv (columns stream,frame,labels; "
          "labels separated by ';') or <root>/labels.jsonl ({\"stream\", \"frame\", \"labels\": [...]} per line)")
_DEFAULT_COLUMNS = {"stream": "stream", "frame": "frame", "labels": "labels", "boxes": "boxes"}
_NONE_WORDS = {"none", "nothing"}


def _root(ctx: ConvertContext) -> Path:
    """The dataset root as an absolute path, so the image paths in the streams (and the stream
    cache) do not depend on the folder the command ran in."""
    if ctx.root is None:
        raise DatasetError(f"task '{ctx.task.name}': the generic converter reads a dataset root "
                           "(dataset.required must not be false)", expected=LAYOUT)
    return Path(ctx.root).absolute()


def natural_key(name: str) -> list:
    """Sort key that compares runs of digits as numbers: frame2 < frame10."""
    return [(0, int(p), p) if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name) if p]


@dataclass(frozen=True)
class LabelRow:
    stream: str
    frame: str | int
    labels: tuple[str, ...]
    boxes: tuple[Box, ...]
    line: int


@register_converter
class GenericConverter(Converter):
    name = "generic"
    version = "1"
    layout = LAYOUT
    options = {
        "frames_dir": "frames",
        "labels_file": None,  # default: labels.csv or labels.jsonl, whichever exists
        "source_fps": None,  # the frames folder's rate; default: the task's fps
        "pattern": ["*.jpg", "*.jpeg", "*.png"],
        "label_separator": ";",
        "columns": dict(_DEFAULT_COLUMNS),
        "frame_key": "name",  # name | index
        "unlabeled": "error",  # error | skip | empty
    }

    # -- options and paths ------------------------------------------------------------------------

    def _opts(self, ctx: ConvertContext) -> dict[str, Any]:
        o = dict(ctx.options)
        src = ctx.task.source

        def bad(key: str, expected: str):
            return ConfigError(f"expected {expected}, got {o[key]!r}", path=src, key=f"converter_options.{key}")

        if not isinstance(o["frames_dir"], str) or not o["frames_dir"]:
            raise bad("frames_dir", "a folder name")
        if o["labels_file"] is not None and (not isinstance(o["labels_file"], str) or not o["labels_file"].strip()):
            raise bad("labels_file", "a file name under the root")
        fps = o["source_fps"]
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps)
                                or fps <= 0):
            raise bad("source_fps", "a positive finite number (frames per second of the frames folder)")
        o["source_fps"] = float(fps) if fps is not None else ctx.task.fps
        pats = [o["pattern"]] if isinstance(o["pattern"], str) else o["pattern"]
        if not isinstance(pats, list) or not pats or not all(isinstance(p, str) and p for p in pats):
            raise bad("pattern", "a glob pattern or a list of them")
        o["pattern"] = pats
        if not isinstance(o["label_separator"], str) or not o["label_separator"]:
            raise bad("label_separator", "a non-empty string")
        cols = o["columns"]
        if not isinstance(cols, dict) or set(cols) - set(_DEFAULT_COLUMNS) or \
                not all(isinstance(v, str) and v for v in cols.values()):
            raise bad("columns", f"a mapping with some of the keys {sorted(_DEFAULT_COLUMNS)} to column names")
        o["columns"] = {**_DEFAULT_COLUMNS, **cols}
        if len(set(o["columns"].values())) != len(o["columns"]):
            raise bad("columns", "a different column name for each of stream, frame, labels and boxes")
        if o["frame_key"] not in ("name", "index"):
            raise bad("frame_key", "'name' (the image's file name) or 'index' (0-based position in name order)")
        if o["unlabeled"] not in ("error", "skip", "empty"):
            raise bad("unlabeled", "'error', 'skip' or 'empty'")
        space = ctx.task.label_space
        if o["unlabeled"] == "empty" and not space.multi_label and not space.none_label:
            raise ConfigError("'empty' needs a multi-label task or a label space with none_label", path=src,
                              key="converter_options.unlabeled")
        return o

    def _layout(self, ctx: ConvertContext) -> str:
        return ctx.task.dataset.get("layout") or LAYOUT

    def _labels_path(self, ctx: ConvertContext, opts: dict) -> Path:
        if opts["labels_file"]:
            path = _root(ctx) / opts["labels_file"]
            if not path.is_file():
                raise DatasetError(f"task '{ctx.task.name}': labels file not found", path=str(path),
                                   expected=self._layout(ctx))
            return path
        found = [p for p in (_root(ctx) / "labels.csv", _root(ctx) / "labels.jsonl") if p.is_file()]
        if not found:
            raise DatasetError(f"task '{ctx.task.name}': no labels.csv or labels.jsonl in the dataset root",
                               path=str(ctx.root), expected=self._layout(ctx))
        if len(found) > 1:
            raise DatasetError(f"task '{ctx.task.name}': both labels.csv and labels.jsonl exist; name one with "
                               "converter_options.labels_file", path=str(ctx.root), expected=self._layout(ctx))
        return found[0]

    def inputs(self, ctx: ConvertContext) -> list[Path]:
        """The labels file, and the frames folders (a folder's mtime changes when images are
        added or removed, so the stream cache notices)."""
        opts = self._opts(ctx)
        out: list[Path] = []
        try:
            out.append(self._labels_path(ctx, opts))
        except DatasetError:
            pass  # convert() reports it
        frames = _root(ctx) / opts["frames_dir"]
        if frames.is_dir():
            out.append(frames)
            out += [d for d in frames.iterdir() if d.is_dir()]
        return out

    # -- reading labels ----------------------------------------------------------------------------

    def _label_table(self, ctx: ConvertContext) -> dict[str, str]:
        space = ctx.task.label_space
        table: dict[str, str] = {}
        for name in space.names + ([space.none_label] if space.none_label else []):
            for phrase in [name, *space.synonyms.get(name, [])]:
                table.setdefault(normalize(phrase).strip(), name)
        return table

    def _map_labels(self, ctx: ConvertContext, items: list, table: dict[str, str], path: Path,
                    line: int) -> tuple[str, ...]:
        space = ctx.task.label_space
        out: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise DatasetError(f"line {line}: label {item!r} is not a string", path=str(path))
            key = normalize(item).strip()
            if not key or (key in _NONE_WORDS and key not in table):
                continue
            if key not in table:
                raise DatasetError(f"line {line}: label '{item.strip()}' is not in the label space of task "
                                   f"'{ctx.task.name}' ({', '.join(space.names)}; synonyms count too)",
                                   path=str(path))
            if table[key] not in out:
                out.append(table[key])
        if not space.multi_label:
            if not out and space.none_label:
                out = [space.none_label]
            if len(out) != 1:
                raise DatasetError(f"line {line}: a single-label task needs exactly one label per frame, got "
                                   f"{out or 'none'}", path=str(path))
        return tuple(out)

    def read_labels(self, ctx: ConvertContext, opts: dict) -> tuple[Path, list[LabelRow]]:
        path = self._labels_path(ctx, opts)
        text = read_text(path, what="labels file", expected=self._layout(ctx))
        table = self._label_table(ctx)
        if path.suffix.lower() == ".jsonl":
            return path, self._read_jsonl(ctx, opts, path, text, table)
        return path, self._read_csv(ctx, opts, path, text, table)

    def _read_jsonl(self, ctx: ConvertContext, opts: dict, path: Path, text: str,
                    table: dict[str, str]) -> list[LabelRow]:
        cols, sep = opts["columns"], opts["label_separator"]
        rows: list[LabelRow] = []
        for line, record in enumerate(text.splitlines(), start=1):
            if not record.strip():
                continue
            try:
                rec = json.loads(record)
            except json.JSONDecodeError as e:
                raise DatasetError(f"line {line}: not JSON ({e.msg}, column {e.colno}; a file cut short?)",
                                   path=str(path), expected=self._layout(ctx)) from None
            if not isinstance(rec, dict):
                raise DatasetError(f"line {line}: expected a JSON object, got {type(rec).__name__}", path=str(path),
                                   expected=self._layout(ctx))
            # a record without its labels is an error, not a frame with no objects: [] says that
            missing = [cols[k] for k in ("stream", "frame", "labels") if cols[k] not in rec]
            if missing:
                raise DatasetError(f"line {line}: missing key(s) {missing} (a frame with no labels has "
                                   f"\"{cols['labels']}\": [])", path=str(path), expected=self._layout(ctx))
            labels = rec[cols["labels"]]
            if isinstance(labels, str):
                labels = labels.split(sep)
            if not isinstance(labels, list):
                raise DatasetError(f"line {line}: '{cols['labels']}' must be a list of labels or a string, got "
                                   f"{labels!r} (a frame with no labels has [])", path=str(path))
            stream = rec[cols["stream"]]
            if not isinstance(stream, (str, int)) or isinstance(stream, bool) or not str(stream).strip():
                raise DatasetError(f"line {line}: bad '{cols['stream']}' {stream!r} (a stream folder name)",
                                   path=str(path))
            mapped = self._map_labels(ctx, labels, table, path, line)
            boxes = self._boxes(ctx, rec.get(cols["boxes"]), table, path, line)
            stray = sorted({b.label for b in boxes} - set(mapped))
            if stray:
                raise DatasetError(f"line {line}: boxes of {stray}, which are not among the frame's labels "
                                   f"{list(mapped)}", path=str(path))
            rows.append(LabelRow(str(stream).strip(), self._frame_ref(rec[cols["frame"]], path, line), mapped, boxes,
                                 line))
        return rows

    def _read_csv(self, ctx: ConvertContext, opts: dict, path: Path, text: str,
                  table: dict[str, str]) -> list[LabelRow]:
        cols, sep = opts["columns"], opts["label_separator"]
        rows: list[LabelRow] = []
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, [])
            missing = [cols[k] for k in ("stream", "frame", "labels") if cols[k] not in header]
            if missing:
                raise DatasetError(f"missing column(s) {missing}; the header has {header}", path=str(path),
                                   expected=self._layout(ctx))
            twice = sorted({cols[k] for k in ("stream", "frame", "labels") if header.count(cols[k]) > 1})
            if twice:
                raise DatasetError(f"column(s) {twice} appear more than once in the header {header}", path=str(path),
                                   expected=self._layout(ctx))
            pos = {k: header.index(cols[k]) for k in ("stream", "frame", "labels")}
            while True:
                line = reader.line_num + 1  # where the record starts (a quoted cell may span lines)
                rec = next(reader, None)
                if rec is None:
                    break
                if not rec or not "".join(rec).strip():
                    continue
                # A short row would read its labels as "no labels", a long one (labels split on
                # commas) would keep only the first: both change the ground truth, so both stop here.
                if len(rec) != len(header):
                    hint = ""
                    if len(rec) > len(header):
                        hint = (f"; labels are separated by {sep!r} (converter_options.label_separator), or put a "
                                "cell that holds commas in double quotes")
                    raise DatasetError(f"line {line}: {len(rec)} field(s), the header has {len(header)} "
                                       f"({','.join(header)}){hint}: {','.join(rec)!r}", path=str(path),
                                       expected=self._layout(ctx))
                if any("\n" in cell or "\r" in cell for cell in rec):
                    raise DatasetError(f"line {line}: a quoted cell runs over lines {line}..{reader.line_num} (a double "
                                       "quote left open?)", path=str(path), expected=self._layout(ctx))
                stream = rec[pos["stream"]].strip()
                if not stream:
                    raise DatasetError(f"line {line}: empty '{cols['stream']}'", path=str(path))
                labels = rec[pos["labels"]].split(sep)
                rows.append(LabelRow(stream, self._frame_ref(rec[pos["frame"]].strip(), path, line),
                                     self._map_labels(ctx, labels, table, path, line), (), line))
        except csv.Error as e:
            raise DatasetError(f"line {reader.line_num}: malformed CSV ({e})", path=str(path),
                               expected=self._layout(ctx)) from None
        return rows

    def _frame_ref(self, value: Any, path: Path, line: int) -> str | int:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise DatasetError(f"line {line}: bad frame {value!r} (an image file name or a 0-based index)",
                               path=str(path))
        return value

    def _boxes(self, ctx: ConvertContext, value: Any, table: dict[str, str], path: Path,
               line: int) -> tuple[Box, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise DatasetError(f"line {line}: boxes must be a list of [label, x1, y1, x2, y2]", path=str(path))
        out = []
        for b in value:
            if not (isinstance(b, list) and len(b) == 5 and isinstance(b[0], str)
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in b[1:])
                    and b[1] <= b[3] and b[2] <= b[4]):
                raise DatasetError(f"line {line}: a box is [label, x1, y1, x2, y2] with finite numbers, x1 <= x2 and "
                                   f"y1 <= y2, got {b!r}", path=str(path))
            label = table.get(normalize(b[0]).strip())
            if label is None:
                raise DatasetError(f"line {line}: box label '{b[0]}' is not in the label space of task "
                                   f"'{ctx.task.name}' ({', '.join(ctx.task.label_space.names)})", path=str(path))
            out.append(Box(label, float(b[1]), float(b[2]), float(b[3]), float(b[4])))
        return tuple(out)

    # -- converting ---------------------------------------------------------------------------------

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        opts = self._opts(ctx)
        frames_dir = _root(ctx) / opts["frames_dir"]
        if not frames_dir.is_dir():
            raise DatasetError(f"task '{ctx.task.name}': frames folder not found", path=str(frames_dir),
                               expected=self._layout(ctx))
        labels_path, rows = self.read_labels(ctx, opts)
        stream_dirs = {d.name: d for d in sorted(frames_dir.iterdir()) if d.is_dir() and not d.name.startswith(".")}
        if not stream_dirs:
            raise DatasetError(f"task '{ctx.task.name}': no stream folders in the frames folder",
                               path=str(frames_dir), expected=self._layout(ctx))
        images = {s: self._images(d, opts["pattern"], ctx) for s, d in stream_dirs.items()}

        # (stream, source index) -> row
        by_frame: dict[tuple[str, int], LabelRow] = {}
        index = {s: _FrameIndex(files) for s, files in images.items()}
        for row in rows:
            if row.stream not in stream_dirs:
                raise DatasetError(f"line {row.line}: stream '{row.stream}' has no folder {frames_dir / row.stream}",
                                   path=str(labels_path), expected=self._layout(ctx))
            j = self._locate(row, index[row.stream], opts["frame_key"], labels_path, frames_dir)
            if (row.stream, j) in by_frame:
                raise DatasetError(f"line {row.line}: frame '{row.frame}' of stream '{row.stream}' is labelled "
                                   f"twice (also line {by_frame[(row.stream, j)].line})", path=str(labels_path))
            by_frame[(row.stream, j)] = row

        k, fps = ctx.task.images_per_query, ctx.task.fps
        streams, unlabeled = [], []
        for s, files in images.items():
            sampled = sample_regular(len(files), opts["source_fps"], fps)
            frames, skipped = [], 0
            for t, j in enumerate(sampled):
                row = by_frame.get((s, j))
                if row is None:
                    if opts["unlabeled"] == "error":
                        unlabeled.append(f"{s}/{files[j].name}")
                        continue
                    if opts["unlabeled"] == "skip":
                        skipped += 1
                        continue
                    space = ctx.task.label_space
                    labels, boxes = (() if space.multi_label else (space.none_label,)), ()
                else:
                    labels, boxes = row.labels, row.boxes
                # the previous sampled frames (labelled or not) come first; frame 0 repeats itself
                imgs = [files[sampled[max(0, t - d)]] for d in range(k - 1, -1, -1)]
                frames.append(ctx.frame(s, len(frames), t / fps, imgs, labels, boxes=boxes,
                                        meta={"source_index": j, "file": files[j].name}))
            ctx.advance(len(frames))
            if not frames:
                continue
            meta: dict[str, Any] = {"source_frames": len(files), "source_fps": opts["source_fps"]}
            if skipped:
                meta["unlabeled_frames_skipped"] = skipped
            streams.append(Stream(id=s, task=ctx.task.name, fps=fps, frames=frames, meta=meta))
        if unlabeled:
            shown = ", ".join(unlabeled[:5]) + (f" and {len(unlabeled) - 5} more" if len(unlabeled) > 5 else "")
            raise DatasetError(f"task '{ctx.task.name}': {len(unlabeled)} sampled frame(s) have no row in the "
                               f"labels file: {shown} (set converter_options.unlabeled to 'skip' or 'empty' to "
                               "allow this)", path=str(labels_path), expected=self._layout(ctx))
        return streams

    def _images(self, folder: Path, patterns: list[str], ctx: ConvertContext) -> list[Path]:
        files = {p for pat in patterns for p in folder.glob(pat) if p.is_file()}
        if not files:
            raise DatasetError(f"task '{ctx.task.name}': stream folder has no images matching {patterns}",
                               path=str(folder), expected=self._layout(ctx))
        return sorted(files, key=lambda p: natural_key(p.name))

    def _locate(self, row: LabelRow, index: "_FrameIndex", frame_key: str, labels_path: Path,
                frames_dir: Path) -> int:
        """The source index a row's `frame` names."""
        folder = frames_dir / row.stream
        if frame_key == "index":
            ref = str(row.frame).strip()
            if not ref.isdigit():
                raise DatasetError(f"line {row.line}: frame '{row.frame}' is not a 0-based index "
                                   "(converter_options.frame_key is 'index')", path=str(labels_path))
            j = int(ref)
            if j >= index.n:
                raise DatasetError(f"line {row.line}: frame index {j} is out of range: stream '{row.stream}' has "
                                   f"{index.n} images in {folder}", path=str(labels_path))
            return j
        ref = str(row.frame)
        if ref in index.names:
            return index.names[ref]
        hits = index.stems.get(ref, [])
        if len(hits) != 1:
            what = "matches several images" if hits else "names no image"
            raise DatasetError(f"line {row.line}: frame '{ref}' {what} in {folder} (give the file name, "
                               "e.g. 000001.jpg, or set converter_options.frame_key: index)", path=str(labels_path))
        return hits[0]


class _FrameIndex:
    """A stream's images by file name and by name without extension."""

    def __init__(self, files: list[Path]):
        self.n = len(files)
        self.names = {f.name: i for i, f in enumerate(files)}
        self.stems: dict[str, list[int]] = {}
        for i, f in enumerate(files):
            self.stems.setdefault(f.stem, []).append(i)
