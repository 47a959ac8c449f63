"""nuScenes -> Streams: one stream per scene, CAM_FRONT keyframes (2 Hz) sampled to the task's fps.

Read through the real nuscenes-devkit (an optional extra: `pip install 'edgevlm-eval[nuscenes]'`,
imported only when this converter runs). On disk, the official release:

    <root>/<version>/{category,attribute,visibility,instance,sensor,calibrated_sensor,ego_pose,
                      log,scene,sample,sample_data,sample_annotation,map}.json
    <root>/maps/<map>.png                  (the devkit opens the map masks when it loads)
    <root>/samples/CAM_FRONT/<...>.jpg     (1600x900 keyframe images)

Scenes: the devkit's `create_splits_scenes()` names the scenes of a split ("val": 150 scenes of
v1.0-trainval, "mini_val"/"mini_train" of v1.0-mini, ...); "all" takes every scene in the tables.
A stream's id is the scene name.

Sampling: a scene's keyframes are walked sample by sample; the camera's keyframe sample_data
timestamps (microseconds, made relative to the scene's first keyframe) go through
`sampling.sample_timestamps` at the task's fps, and frame t gets timestamp t / fps. Keyframes come
every ~0.5 s with jitter, so at 1 FPS roughly every other one is kept; a target with no keyframe
within half a period (a gap in the recording) is skipped, leaving a gap in time.

Labels: the annotations the devkit returns for the camera with `get_sample_data(...,
box_vis_level)` (BoxVisibility.ANY: any corner inside the image and the whole box in front of the
camera; occlusion is not considered), mapped to the 10 detection classes by the devkit's
`category_to_detection_name` (categories it maps to None, e.g. animal, debris, stroller, are
dropped) and spelled with spaces ("traffic cone"). Frame boxes are those 3D boxes projected into
the image and clipped to it, as the devkit's export_2d_annotations_as_json does (convex hull of
the projected corners intersected with the image, in original pixels).

Images are not opened here: a missing image is reported per frame at run time by the engine.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.core.sampling import sample_timestamps
from edgevlm_eval.core.types import Box, Stream

from . import ConvertContext, Converter, register_converter

TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
          "log", "scene", "sample", "sample_data", "sample_annotation", "map")
# The devkit's detection classes (nuscenes.eval.detection), as labels.
DETECTION_LABELS = ("car", "truck", "bus", "trailer", "construction vehicle", "pedestrian", "motorcycle",
                    "bicycle", "traffic cone", "barrier")
INSTALL_HINT = "pip install 'edgevlm-eval[nuscenes]'"
LAYOUT = ("<root>/<version>/{" + ",".join(TABLES) + "}.json, <root>/maps/*.png and "
          "<root>/samples/CAM_FRONT/*.jpg (the official nuScenes release; root = the devkit's dataroot)")


class DevkitMissingError(DatasetError, ImportError):
    """The nuscenes-devkit extra is not installed (an ImportError that the CLI prints plainly)."""


def _devkit() -> SimpleNamespace:
    """The devkit pieces this converter uses, imported on first use (it pins numpy < 2)."""
    try:
        from nuscenes.eval.detection.utils import category_to_detection_name
        from nuscenes.nuscenes import NuScenes
        from nuscenes.scripts.export_2d_annotations_as_json import post_process_coords
        from nuscenes.utils.geometry_utils import BoxVisibility, view_points
        from nuscenes.utils.splits import create_splits_scenes
    except ImportError as e:
        raise DevkitMissingError(f"the nuscenes task needs the nuScenes devkit, which could not be imported ({e}); "
                                 f"install the extra: {INSTALL_HINT}") from e
    return SimpleNamespace(NuScenes=NuScenes, BoxVisibility=BoxVisibility, view_points=view_points,
                           create_splits_scenes=create_splits_scenes,
                           category_to_detection_name=category_to_detection_name,
                           post_process_coords=post_process_coords)


@register_converter
class NuScenesConverter(Converter):
    name = "nuscenes"
    version = "1"
    layout = LAYOUT
    options = {
        "version": "v1.0-trainval",  # the tables folder: v1.0-trainval | v1.0-mini
        "camera": "CAM_FRONT",
        "box_visibility": "any",  # any | all: BoxVisibility level for "appears in the image"
        "min_visibility": 1,  # 1..4: drop annotations below this nuScenes visibility token (1 = v0-40 keeps all)
        "boxes": True,  # also store the projected 2D boxes (ROIs for GGVR / GRVR)
    }

    def _table_root(self, ctx: ConvertContext) -> Path:
        return Path(ctx.root) / str(ctx.options["version"])

    def inputs(self, ctx: ConvertContext) -> list[Path]:
        if ctx.root is None:
            return []
        return [self._table_root(ctx) / f"{t}.json" for t in TABLES]

    # -- checks ---------------------------------------------------------------------------------

    def _check_options(self, ctx: ConvertContext) -> dict[str, Any]:
        opts = ctx.options
        src = ctx.task.source
        for key in ("version", "camera"):
            if not isinstance(opts[key], str) or not opts[key].strip():
                raise ConfigError(f"expected a name, got {opts[key]!r}", path=src, key=f"converter_options.{key}")
        if not isinstance(opts["boxes"], bool):
            raise ConfigError(f"expected true or false, got {opts['boxes']!r}", path=src, key="converter_options.boxes")
        vis = str(opts["box_visibility"]).lower()
        if vis not in ("any", "all"):
            raise ConfigError(f"expected 'any' or 'all', got {opts['box_visibility']!r}", path=src,
                              key="converter_options.box_visibility")
        minvis = opts["min_visibility"]
        if isinstance(minvis, bool) or not isinstance(minvis, int) or not 1 <= minvis <= 4:
            raise ConfigError(f"expected an integer 1..4 (nuScenes visibility tokens), got {minvis!r}", path=src,
                              key="converter_options.min_visibility")
        if ctx.task.images_per_query != 1:
            raise ConfigError(f"nuScenes frames send one image, not {ctx.task.images_per_query}", path=src,
                              key="images_per_query")
        missing = [n for n in DETECTION_LABELS if n not in ctx.task.label_space.names]
        if missing:
            raise ConfigError(f"the nuScenes converter labels frames with the detection classes {missing}, which "
                              "the label space lacks", path=src, key="label_space.labels")
        return {"vis": vis, "min_visibility": minvis}

    def _load(self, ctx: ConvertContext, dk: SimpleNamespace):
        if ctx.root is None or not Path(ctx.root).is_dir():
            raise DatasetError("nuScenes: dataset root is not a folder", path=str(ctx.root), expected=self.layout)
        table_root = self._table_root(ctx)
        if not table_root.is_dir():
            found = sorted(p.name for p in Path(ctx.root).glob("v1.0-*") if p.is_dir())
            raise DatasetError(f"nuScenes: no tables folder for version '{ctx.options['version']}' "
                               f"(converter_options.version); version folders found: {found or 'none'}",
                               path=str(table_root), expected=self.layout)
        for t in TABLES:
            if not (table_root / f"{t}.json").is_file():
                raise DatasetError(f"nuScenes: table '{t}' is missing", path=str(table_root / f"{t}.json"),
                                   expected=self.layout)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the devkit prints its loading progress
                return dk.NuScenes(version=str(ctx.options["version"]), dataroot=str(Path(ctx.root).resolve()),
                                   verbose=False)
        except Exception as e:  # the devkit reports bad tables with asserts and KeyErrors
            raise DatasetError(f"nuScenes: the devkit could not load the tables: {type(e).__name__}: {e}",
                               path=str(table_root), expected=self.layout) from None

    def _scenes(self, ctx: ConvertContext, nusc, dk: SimpleNamespace) -> list[dict]:
        split = str(ctx.task.dataset.get("split") or "val")
        if split == "all":
            return list(nusc.scene)
        splits = dk.create_splits_scenes()
        if split not in splits:
            raise ConfigError(f"unknown nuScenes split {split!r}; known: all, {', '.join(sorted(splits))}",
                              path=ctx.task.source, key="dataset.split")
        wanted = set(splits[split])
        scenes = [s for s in nusc.scene if s["name"] in wanted]
        if not scenes:
            raise DatasetError(f"nuScenes: none of the {len(wanted)} scenes of split '{split}' are in the "
                               f"'{ctx.options['version']}' tables (v1.0-mini holds mini_train/mini_val, "
                               "v1.0-trainval train/val; 'all' takes every scene)",
                               path=str(self._table_root(ctx)), expected=self.layout)
        return scenes

    # -- converting -----------------------------------------------------------------------------

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        checked = self._check_options(ctx)
        dk = _devkit()
        nusc = self._load(ctx, dk)
        camera = str(ctx.options["camera"])
        cameras = sorted({s["channel"] for s in nusc.sensor if s["modality"] == "camera"})
        if camera not in cameras:
            raise ConfigError(f"unknown camera {camera!r}; the tables have {', '.join(cameras) or 'no camera'}",
                              path=ctx.task.source, key="converter_options.camera")
        vis_level = dk.BoxVisibility.ANY if checked["vis"] == "any" else dk.BoxVisibility.ALL
        streams = []
        for scene in self._scenes(ctx, nusc, dk):
            keyframes = self._keyframes(ctx, nusc, scene, camera)
            if not keyframes:
                continue
            t0 = keyframes[0]["timestamp"]
            times = [(sd["timestamp"] - t0) / 1e6 for sd in keyframes]
            try:
                picks = sample_timestamps(times, ctx.task.fps)
            except ValueError as e:
                raise DatasetError(f"nuScenes: scene {scene['name']}: {camera} keyframe timestamps: {e}",
                                   path=str(self._table_root(ctx) / "sample_data.json")) from None
            frames = []
            for t, j in picks:
                sd = keyframes[j]
                path, labels, boxes = self._annotate(nusc, dk, sd, vis_level, checked["min_visibility"],
                                                     bool(ctx.options["boxes"]))
                frames.append(ctx.frame(scene["name"], len(frames), t / ctx.task.fps, [path],
                                        [n for n in ctx.task.label_space.names if n in labels], boxes=boxes,
                                        meta={"sample_token": sd["sample_token"], "sample_data_token": sd["token"],
                                              "source_time_s": round(times[j], 6)}))
            ctx.advance(len(frames))
            log = nusc.get("log", scene["log_token"])
            streams.append(Stream(id=scene["name"], task=ctx.task.name, fps=ctx.task.fps, frames=frames, meta={
                "scene_token": scene["token"], "description": scene.get("description", ""),
                "location": log.get("location", ""), "camera": camera, "keyframes": len(keyframes),
                "version": str(ctx.options["version"])}))
        return streams

    def _keyframes(self, ctx: ConvertContext, nusc, scene: dict, camera: str) -> list[dict]:
        """The camera's keyframe sample_data records of a scene, in sample order."""
        out, seen = [], set()
        token = scene["first_sample_token"]
        while token and token not in seen:  # `seen` guards against a broken prev/next chain
            seen.add(token)
            sample = nusc.get("sample", token)
            sd_token = sample["data"].get(camera)
            if sd_token is None:
                raise DatasetError(f"nuScenes: sample {token} of {scene['name']} has no {camera} keyframe "
                                   "(no sample_data with is_key_frame=true for it)",
                                   path=str(self._table_root(ctx) / "sample_data.json"), expected=self.layout)
            out.append(nusc.get("sample_data", sd_token))
            token = sample["next"]
        return out

    @staticmethod
    def _annotate(nusc, dk: SimpleNamespace, sd: dict, vis_level, min_visibility: int,
                  want_boxes: bool) -> tuple[str, set[str], list[Box]]:
        """(image path, detection labels visible in the camera, their 2D boxes)."""
        path, boxes3d, intrinsic = nusc.get_sample_data(sd["token"], box_vis_level=vis_level)
        labels: set[str] = set()
        boxes: list[Box] = []
        for b in boxes3d:
            det = dk.category_to_detection_name(b.name)
            if det is None:
                continue
            if min_visibility > 1:
                vis = nusc.get("sample_annotation", b.token).get("visibility_token") or "0"
                if int(vis) < min_visibility:
                    continue
            label = det.replace("_", " ")
            labels.add(label)
            if want_boxes:
                corners = dk.view_points(b.corners(), intrinsic, normalize=True)[:2, :].T.tolist()
                try:
                    rect = dk.post_process_coords(corners, (sd["width"], sd["height"]))
                except AttributeError:  # the hull only touches the image: a point or a line, no area
                    rect = None
                if rect is not None:
                    x1, y1, x2, y2 = (round(float(v), 2) for v in rect)
                    boxes.append(Box(label, x1, y1, x2, y2))
        return str(Path(path)), labels, boxes
