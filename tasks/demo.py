"""The built-in synthetic `demo` world: road scenes at the task's rate (1 FPS), generated from a
seed, so the whole toolkit runs without a dataset download.

What a frame shows: a straight road in perspective (horizon, lane markings that scroll as the
camera car drives, sidewalks, roadside trees and poles, a distant skyline) and objects of the ten
nuScenes detection classes, each drawn with its own shape and colour:

    car                   red rounded body, cabin, window, wheels
    truck                 big blue cargo box with a cab
    bus                   long yellow body with a window band
    trailer               brown box with ribs and a hitch, no cab
    construction vehicle  purple body, cab and digger arm, on tracks
    pedestrian            thin upright cyan figure
    motorcycle            magenta body on two black wheels
    bicycle               green wheels and frame
    traffic cone          orange cone with a white band
    barrier               white bar with black stripes, on legs

Geometry: a pinhole camera 1.5 m above a flat ground, focal length 0.8 x image width, horizon at
~40 % of the height. An object at lateral offset X and depth Z (metres) is drawn in the box
u = cx + f X / Z +- f w / 2Z, bottom v = horizon + f 1.5 / Z, height f h / Z, so it shrinks with
distance down to a pixel. Objects move on straight lines relative to the camera (traffic in the
lanes, oncoming traffic, static cones, barriers and parked machines approaching as the camera
drives, pedestrians walking along or across): they enter (at the far end, from behind, or from
the side), move smoothly, and leave (past the camera or out of the view). Objects far enough to
cover a few pixels are drawn as a solid block of their colour; details appear from 12 px.

Visibility rule (the ground truth): an object is in the frame's labels, and has a box, when it
shows at least `min_visible_px` (default 3) pixels of its class colour in the rendered image,
counted after clipping to the image and after occlusion by nearer objects and scenery (drawn far
to near). So a 1-2 px speck is not ground truth but a 3-6 px one is (a small model that misses
distant objects a larger one sees scores lower), and a truck of which only a wheel peeks out is
not a truck. A box bounds all the pixels the object shows (wheels and windows too), in pixel-edge
coordinates (a pixel at column c spans c..c+1).

Determinism: everything comes from numpy Generators seeded with (seed, stream index), so a stream
does not depend on how many streams are generated, and a longer stream starts like a shorter one.
The world is in metres and seconds; width and height only change the camera.

Python API for training scripts (no files written):

    world = generate_world(seed=0, n_streams=100, frames_per_stream=20)
    for stream in world:
        for frame in stream.frames:
            image = render(frame)          # PIL.Image, RGB
            frame.labels, frame.boxes      # ground truth

The converter renders every frame to PNG (lossless, so the colours above stay exact) under the
stream cache's work folder: <work_dir>/<stream id>/<index:04d>.png.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.io import atomic_write_bytes
from edgevlm_eval.core.types import Box, Stream

from . import ConvertContext, Converter, register_converter

RGB = tuple[int, int, int]

# nuScenes' ten detection classes, in the order labels are listed.
CLASSES: tuple[str, ...] = ("car", "truck", "bus", "trailer", "construction vehicle", "pedestrian",
                            "motorcycle", "bicycle", "traffic cone", "barrier")


@dataclass(frozen=True)
class ClassLook:
    colour: RGB  # the class's own colour: its body, and all of it when drawn as a speck
    width_m: float  # drawn width and height (a stylised view, not the real footprint)
    height_m: float


LOOKS: dict[str, ClassLook] = {
    "car": ClassLook((220, 30, 35), 2.2, 1.5),
    "truck": ClassLook((30, 80, 220), 3.2, 3.0),
    "bus": ClassLook((240, 200, 20), 3.4, 3.0),
    "trailer": ClassLook((140, 80, 40), 3.0, 3.2),
    "construction vehicle": ClassLook((150, 50, 200), 3.0, 2.8),
    "pedestrian": ClassLook((0, 200, 215), 0.55, 1.75),
    "motorcycle": ClassLook((230, 40, 170), 1.6, 1.2),
    "bicycle": ClassLook((40, 185, 60), 1.5, 1.1),
    "traffic cone": ClassLook((255, 120, 0), 0.45, 0.75),
    "barrier": ClassLook((255, 255, 255), 2.0, 1.0),
}
GLASS: RGB = (175, 205, 225)
BLACK: RGB = (25, 25, 25)
DARK: RGB = (60, 60, 60)
RIB: RGB = (105, 60, 30)
TRUNK: RGB = (95, 75, 60)
CROWN: RGB = (45, 100, 50)
POLE: RGB = (110, 110, 115)
MARKING: RGB = (230, 230, 215)
SIDEWALK: RGB = (165, 163, 158)
CONE_BAND: RGB = (240, 240, 240)  # not the barrier's white: no class colour appears in another class or the scenery

CAMERA_HEIGHT_M = 1.5
LANE_M = 3.5
ROAD_LEFT_M, ROAD_RIGHT_M = -2.5 * LANE_M, 1.5 * LANE_M  # ego lane centred on X = 0, two oncoming lanes
SIDEWALK_M = 3.2
NEAREST_M = 3.0  # an object closer than this has passed the camera
DETAIL_PX = 12  # below this height an object is a solid block of its colour
MAX_OBJECTS = 120  # per frame: the id mask holds ids 1..120 (class colour) and 121..240 (other parts)
# Bounds on the converter's options (generate_world itself takes anything).
MAX_SIDE_PX = 4096
MAX_DENSITY = 100.0
MAX_DISTANCE_M = 1000.0
MAX_FRAMES = 100_000
MAX_STREAM_S = 24 * 3600

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_streams": 32,
    "frames_per_stream": 20,
    "width": 448,
    "height": 252,
    "max_objects": 24,  # objects alive at once in a stream (at most MAX_OBJECTS)
    "min_visible_px": 3,  # the visibility rule above
    "density": 1.0,  # multiplies how many objects a stream starts with and how often new ones enter
    "max_distance_m": 150.0,  # objects enter (and leave) this far ahead
}


# ---------------------------------------------------------------------------------------------
# The world: camera, scenes, tracks


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    focal_px: float
    cx: float
    horizon_y: float

    def box(self, x_m: float, z_m: float, w_m: float, h_m: float) -> tuple[float, float, float, float]:
        """Projected (x1, y1, x2, y2) of an upright w x h object standing on the ground at (x, z)."""
        f = self.focal_px / z_m
        u = self.cx + x_m * f
        bottom = self.horizon_y + CAMERA_HEIGHT_M * f
        return (u - w_m * f / 2, bottom - h_m * f, u + w_m * f / 2, bottom)

    def ground(self, x_m: float, z_m: float) -> tuple[float, float]:
        return (self.cx + self.focal_px * x_m / z_m, self.horizon_y + self.focal_px * CAMERA_HEIGHT_M / z_m)


@dataclass(frozen=True)
class SceneStyle:
    sky_top: RGB
    sky_bottom: RGB
    ground: RGB
    road: RGB
    horizon_frac: float
    skyline: tuple[tuple[float, float, float, RGB], ...]  # (x1, x2 as fractions of the width, height px at 252, colour)


@dataclass(frozen=True)
class Track:
    """One object's straight-line motion relative to the camera: position at time t is
    (x0 + vx (t - t0), z0 + vz (t - t0)), from t0 (when it entered) on. `follow_m` keeps a vehicle ahead in the
    camera's lane from coming closer than that (it keeps its distance instead of driving into
    the camera)."""

    id: int
    label: str
    t0: float
    x0: float
    z0: float
    vx: float
    vz: float
    follow_m: float = 0.0

    def position(self, t: float) -> tuple[float, float]:
        z = self.z0 + self.vz * (t - self.t0)
        if self.follow_m:
            z = max(z, self.follow_m)
        return self.x0 + self.vx * (t - self.t0), z

    def gone(self, t: float, max_distance_m: float) -> bool:
        """Left for good (passed the camera, beyond the far end, or walked off sideways)."""
        x, z = self.position(t)
        if z < NEAREST_M or z > max_distance_m * 1.05:
            return True
        return abs(x) > 30 and x * self.vx > 0


@dataclass(frozen=True)
class Scenery:
    kind: str  # "tree" | "pole"
    x_m: float
    s_m: float  # distance along the road from the stream's start; depth is s - travelled


@dataclass(frozen=True)
class DemoObject:
    """One object as seen in one frame, after clipping and occlusion: `pixels` counts the pixels
    it shows in its class colour (the visibility rule), `painted` all it shows (wheels, windows
    too); `box` bounds the painted pixels (None when it shows nothing)."""

    track: int
    label: str
    x_m: float
    z_m: float
    projected: tuple[float, float, float, float]
    pixels: int
    painted: int
    box: Box | None
    visible: bool


@dataclass(frozen=True)
class DemoFrame:
    stream_id: str
    index: int
    timestamp_s: float
    camera: Camera
    style: SceneStyle
    travelled_m: float
    objects: tuple[DemoObject, ...]  # every object alive, nearest last (the drawing order)
    scenery: tuple[Scenery, ...]
    min_visible_px: int

    @property
    def labels(self) -> tuple[str, ...]:
        """The ground truth: classes with at least one visible object, in CLASSES order."""
        seen = {o.label for o in self.objects if o.visible}
        return tuple(c for c in CLASSES if c in seen)

    @property
    def boxes(self) -> tuple[Box, ...]:
        return tuple(o.box for o in self.objects if o.visible)

    @property
    def visible_objects(self) -> tuple[DemoObject, ...]:
        return tuple(o for o in self.objects if o.visible)


@dataclass
class DemoStream:
    id: str
    theme: str
    frames: list[DemoFrame]
    meta: dict[str, Any] = field(default_factory=dict)


# Stream themes: relative class frequencies (CLASSES order), camera speed range (m/s), density.
THEMES: dict[str, tuple[tuple[float, ...], tuple[float, float], float]] = {
    "city": ((4.0, 0.6, 1.5, 0.2, 0.3, 3.5, 1.0, 1.5, 0.4, 0.4), (2.0, 5.0), 1.0),
    "highway": ((4.0, 2.5, 0.6, 1.5, 0.3, 0.3, 0.8, 0.2, 0.6, 1.2), (4.0, 7.0), 0.9),
    "roadworks": ((2.5, 1.0, 0.4, 0.6, 2.0, 1.2, 0.4, 0.4, 2.5, 2.0), (2.0, 4.0), 1.0),
    "suburb": ((2.5, 0.5, 0.6, 0.4, 0.3, 2.0, 0.7, 1.2, 0.5, 0.5), (2.0, 5.0), 0.6),
}
VEHICLES = ("car", "truck", "bus", "trailer", "motorcycle")


class _TrackMaker:
    """Draws new tracks for one stream. Entering objects start at the edge they come from; the
    initial population is spread over the whole depth range as if it entered earlier."""

    def __init__(self, rng: np.random.Generator, ego_speed: float, max_distance_m: float):
        self.rng = rng
        self.ego = ego_speed
        self.zmax = max_distance_m
        self.next_id = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _depth(self, initial: bool, approaching: bool) -> float:
        r = self.rng
        if initial:  # near and middle distances more often than far ones
            return 6.0 + (self.zmax - 6.0) * float(r.random()) ** 2.0
        if approaching:
            return self.zmax * float(r.uniform(0.75, 1.0))
        return float(r.uniform(3.2, 5.0))  # overtaking from behind the camera

    def make(self, label: str, t: float, initial: bool) -> list[Track]:
        r, ego = self.rng, self.ego
        if label in VEHICLES:
            lane = int(r.choice([0, 1, -1, -2], p=[0.3, 0.25, 0.25, 0.2]))
            x = lane * LANE_M + float(r.normal(0, 0.25))
            if label == "motorcycle":
                x += float(r.choice([-1.0, 1.0]))
            if lane < 0:  # oncoming
                vz = -(ego + float(r.uniform(2.0, 6.0)))
            else:
                vz = float(r.uniform(-2.0, 3.0)) if lane == 0 else float(r.uniform(-3.0, 4.0))
            if not initial and vz > 0 and lane == 0:
                vz = -vz  # nothing overtakes through the camera's own lane
            follow = 12.0 if lane == 0 else 0.0
            z = max(self._depth(initial, vz <= 0), follow + 1.0 if lane == 0 else 0.0)
            return [Track(self._id(), label, t, x, z, 0.0, vz, follow_m=follow)]
        if label == "bicycle":
            x = float(r.choice([ROAD_RIGHT_M - 0.8, ROAD_RIGHT_M + 1.5, ROAD_LEFT_M - 1.5]))
            v = float(r.uniform(2.5, 5.0)) * (1 if x > 0 else -1)
            vz = v - ego
            return [Track(self._id(), label, t, x, self._depth(initial, vz <= 0), 0.0, vz)]
        if label == "pedestrian":
            side = float(r.choice([-1.0, 1.0]))
            edge = ROAD_RIGHT_M if side > 0 else ROAD_LEFT_M
            if r.random() < 0.25:  # crossing the road, from the sidewalk it stands on
                z = float(r.uniform(10.0, 90.0)) if not initial else self._depth(True, True)
                x = edge + side * float(r.uniform(0.5, 2.5))
                return [Track(self._id(), label, t, x, z, -side * float(r.uniform(0.8, 1.5)), -ego)]
            x = edge + side * float(r.uniform(0.5, SIDEWALK_M - 0.3))
            vz = float(r.choice([-1.0, 1.0])) * float(r.uniform(0.6, 1.6)) - ego
            return [Track(self._id(), label, t, x, self._depth(initial, vz <= 0), 0.0, vz)]
        if label == "construction vehicle":
            x = float(r.choice([ROAD_RIGHT_M + 1.8, ROAD_LEFT_M - 2.0, 0.6 * LANE_M + 0.3]))
            vz = float(r.uniform(0.0, 1.5)) * float(r.choice([-1.0, 1.0])) - ego
            return [Track(self._id(), label, t, x, self._depth(initial, vz <= 0), 0.0, vz)]
        # traffic cones and barriers come in groups, standing still on the road (so they approach
        # at the camera's speed)
        z = self._depth(initial, True)
        if label == "traffic cone":
            n, gap = int(r.integers(2, 6)), float(r.uniform(4.0, 8.0))
            x = float(r.choice([0.5 * LANE_M + 0.2, -0.5 * LANE_M - 0.2, ROAD_RIGHT_M - 0.4]))
        else:
            n, gap = int(r.integers(1, 4)), 2.3
            x = float(r.choice([ROAD_RIGHT_M + 0.3, ROAD_LEFT_M - 0.3, 0.5 * LANE_M + 1.0]))
        return [Track(self._id(), label, t, x + float(r.normal(0, 0.1)), z + k * gap, 0.0, -ego)
                for k in range(n)]


def _style(rng: np.random.Generator) -> SceneStyle:
    skies = [((135, 185, 235), (205, 225, 245)), ((160, 168, 180), (205, 207, 212)),
             ((95, 110, 160), (215, 185, 165)), ((120, 170, 220), (190, 215, 235))]
    grounds = [(128, 132, 110), (140, 130, 115), (118, 124, 118), (135, 128, 100)]
    top, bottom = skies[int(rng.integers(len(skies)))]
    ground = grounds[int(rng.integers(len(grounds)))]
    g = int(rng.integers(70, 92))
    road = (g, g, g + 4)
    greys = [(120, 120, 130), (140, 132, 126), (100, 105, 115), (150, 150, 152), (112, 116, 108)]
    skyline, x = [], 0.0
    while x < 1.0:
        w = float(rng.uniform(0.03, 0.12))
        if rng.random() < 0.8:
            skyline.append((x, x + w, float(rng.uniform(4, 30)), greys[int(rng.integers(len(greys)))]))
        x += w
    return SceneStyle(top, bottom, ground, road, float(rng.uniform(0.37, 0.43)), tuple(skyline))


def _scenery(rngs: list[np.random.Generator], length_m: float) -> tuple[Scenery, ...]:
    out = []
    for rng, (side, edge) in zip(rngs, ((1.0, ROAD_RIGHT_M + SIDEWALK_M), (-1.0, ROAD_LEFT_M - SIDEWALK_M))):
        s = float(rng.uniform(0, 15))
        while s < length_m:
            kind = "tree" if rng.random() < 0.7 else "pole"
            out.append(Scenery(kind, edge + side * float(rng.uniform(0.8, 4.0)), s))
            s += float(rng.uniform(12.0, 45.0))
    return tuple(out)


def generate_world(seed: int = 0, n_streams: int = 8, frames_per_stream: int = 20, *, width: int = 448,
                   height: int = 252, fps: float = 1.0, max_objects: int = 24, min_visible_px: int = 3,
                   density: float = 1.0, max_distance_m: float = 150.0) -> list[DemoStream]:
    """The demo world: `n_streams` streams of `frames_per_stream` frames at `fps`, with the
    ground truth of every frame computed (rendering the pixels is left to `render`)."""
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"max_objects must be 1..{MAX_OBJECTS}, got {max_objects}")
    return [_stream(seed, i, frames_per_stream, width, height, fps, max_objects, min_visible_px, density,
                    max_distance_m) for i in range(n_streams)]


def _stream(seed: int, i: int, n_frames: int, width: int, height: int, fps: float, max_objects: int,
            min_visible_px: int, density: float, max_distance_m: float) -> DemoStream:
    # separate generators for the stream's parameters, each roadside and the traffic, so that a
    # longer stream starts exactly like a shorter one
    rng, right, left, traffic = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, i]).spawn(4))
    theme = list(THEMES)[(i + seed) % len(THEMES)]
    weights, (v_lo, v_hi), theme_density = THEMES[theme]
    p = np.asarray(weights) / sum(weights)
    ego = float(rng.uniform(v_lo, v_hi))
    style = _style(rng)
    camera = Camera(width, height, 0.8 * width, width / 2, style.horizon_frac * height)
    duration = n_frames / fps
    scenery = _scenery([right, left], ego * duration + max_distance_m + 20)
    # How busy the stream is swings slowly, so some frames hold few labels and some many.
    busy = density * theme_density * float(rng.uniform(0.25, 1.5))
    period, phase = float(rng.uniform(10, 30)), float(rng.uniform(0, 2 * math.pi))
    maker = _TrackMaker(traffic, ego, max_distance_m)

    def add(tracks: list[Track], t: float, initial: bool):
        label = CLASSES[int(traffic.choice(len(CLASSES), p=p))]
        new = maker.make(label, t, initial)
        if len(tracks) + len(new) <= max_objects:
            tracks.extend(new)

    tracks: list[Track] = []
    for _ in range(int(traffic.poisson(7 * busy))):
        add(tracks, 0.0, True)
    frames = []
    for k in range(n_frames):
        t = k / fps
        if k:  # entries during the last frame interval
            rate = 1.0 * busy * (1 + 0.9 * math.sin(2 * math.pi * t / period + phase)) / fps
            tracks = [tr for tr in tracks if not tr.gone(t, max_distance_m)]
            for _ in range(int(traffic.poisson(rate))):
                add(tracks, t, False)
        travelled = ego * t
        objs = [(tr, *tr.position(t)) for tr in tracks if not tr.gone(t, max_distance_m)]
        frames.append(_ground_truth(f"demo-{i:03d}", k, t, camera, style, travelled, objs, scenery,
                                    min_visible_px))
    meta = {"theme": theme, "seed": seed, "ego_speed_mps": round(ego, 3), "tracks": maker.next_id}
    return DemoStream(id=f"demo-{i:03d}", theme=theme, frames=frames, meta=meta)


# ---------------------------------------------------------------------------------------------
# Drawing: every shape is a list of primitives painted on the RGB image and, with the object's
# id instead of its colour, on an id mask (the same PIL call, so the same pixels).


Prim = tuple[str, Any, RGB, int]  # (kind, coordinates, colour, line width)


def _snap(a: float, b: float) -> tuple[int, int] | None:
    """Pixel columns (inclusive) a solid block from a to b covers: those whose centre lies inside,
    at least one when the extent is half a pixel or more."""
    lo, hi = int(math.floor(a + 0.5)), int(math.floor(b + 0.5)) - 1
    if hi < lo:
        if b - a < 0.5:
            return None
        lo = hi = int(math.floor((a + b) / 2))
    return lo, hi


def _solid(box: tuple[float, float, float, float], colour: RGB) -> list[Prim]:
    cols, rows = _snap(box[0], box[2]), _snap(box[1], box[3])
    if cols is None or rows is None:
        return []
    return [("rect", (cols[0], rows[0], cols[1], rows[1]), colour, 0)]


def _shape(label: str, box: tuple[float, float, float, float]) -> list[Prim]:
    """The class's drawing in `box`; a solid block of its colour when small."""
    c = LOOKS[label].colour
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if h < DETAIL_PX or w < 4:
        return _solid(box, c)

    def R(a, b, cc, d):  # box-relative rectangle
        return (x1 + a * w, y1 + b * h, x1 + cc * w, y1 + d * h)

    def P(*pts):  # box-relative polygon
        return [(x1 + a * w, y1 + b * h) for a, b in pts]

    lw = max(1, int(round(w * 0.06)))
    if label == "car":
        return [("poly", P((0.15, 0.42), (0.25, 0.05), (0.75, 0.05), (0.85, 0.42)), c, 0),
                ("rrect", R(0, 0.38, 1, 0.88), c, 0),
                ("poly", P((0.25, 0.38), (0.32, 0.13), (0.68, 0.13), (0.75, 0.38)), GLASS, 0),
                ("rect", R(0.08, 0.84, 0.27, 1.0), BLACK, 0), ("rect", R(0.73, 0.84, 0.92, 1.0), BLACK, 0)]
    if label == "truck":
        return [("rect", R(0, 0, 0.7, 0.86), c, 0), ("rect", R(0.72, 0.3, 1.0, 0.86), c, 0),
                ("rect", R(0.8, 0.36, 0.95, 0.55), GLASS, 0),
                ("ellipse", R(0.07, 0.76, 0.23, 1.0), BLACK, 0), ("ellipse", R(0.47, 0.76, 0.63, 1.0), BLACK, 0),
                ("ellipse", R(0.8, 0.76, 0.96, 1.0), BLACK, 0)]
    if label == "bus":
        prims: list[Prim] = [("rrect", R(0, 0, 1, 0.88), c, 0), ("rect", R(0.05, 0.12, 0.95, 0.42), GLASS, 0)]
        prims += [("rect", R(a, 0.12, a + 0.03, 0.42), c, 0) for a in (0.3, 0.55, 0.8)]
        prims += [("ellipse", R(0.1, 0.78, 0.25, 1.0), BLACK, 0), ("ellipse", R(0.75, 0.78, 0.9, 1.0), BLACK, 0)]
        return prims
    if label == "trailer":
        prims = [("rect", R(0, 0, 0.88, 0.82), c, 0)]
        prims += [("line", [(x1 + a * w, y1 + 0.08 * h), (x1 + a * w, y1 + 0.74 * h)], RIB, lw)
                  for a in (0.22, 0.44, 0.66)]
        prims += [("rect", R(0.88, 0.62, 1.0, 0.68), DARK, 0),
                  ("ellipse", R(0.08, 0.76, 0.26, 1.0), BLACK, 0), ("ellipse", R(0.58, 0.76, 0.76, 1.0), BLACK, 0)]
        return prims
    if label == "construction vehicle":
        return [("rect", R(0.0, 0.45, 0.72, 0.84), c, 0), ("rect", R(0.32, 0.1, 0.66, 0.46), c, 0),
                ("rect", R(0.38, 0.16, 0.6, 0.34), GLASS, 0),
                ("line", [(x1 + 0.66 * w, y1 + 0.5 * h), (x1 + 0.9 * w, y1 + 0.12 * h)], c, max(1, lw * 2)),
                ("poly", P((0.82, 0.1), (1.0, 0.1), (1.0, 0.42), (0.88, 0.3)), c, 0),
                ("rrect", R(0.0, 0.82, 0.74, 1.0), BLACK, 0)]
    if label == "pedestrian":
        return [("ellipse", R(0.28, 0.0, 0.72, 0.18), c, 0), ("rect", R(0.12, 0.19, 0.88, 0.58), c, 0),
                ("rect", R(0.16, 0.58, 0.44, 1.0), c, 0), ("rect", R(0.56, 0.58, 0.84, 1.0), c, 0)]
    if label == "motorcycle":
        ring = max(1, int(round(w * 0.07)))
        return [("ring", R(0.0, 0.48, 0.38, 1.0), BLACK, ring), ("ring", R(0.62, 0.48, 1.0, 1.0), BLACK, ring),
                ("poly", P((0.16, 0.72), (0.3, 0.28), (0.78, 0.28), (0.86, 0.72)), c, 0),
                ("line", [(x1 + 0.74 * w, y1 + 0.3 * h), (x1 + 0.86 * w, y1 + 0.02 * h)], c, lw)]
    if label == "bicycle":
        ring = max(1, int(round(w * 0.05)))
        return [("ring", R(0.0, 0.45, 0.4, 1.0), c, ring), ("ring", R(0.6, 0.45, 1.0, 1.0), c, ring),
                ("line", [(x1 + 0.2 * w, y1 + 0.72 * h), (x1 + 0.45 * w, y1 + 0.35 * h),
                          (x1 + 0.8 * w, y1 + 0.72 * h)], c, lw),
                ("line", [(x1 + 0.45 * w, y1 + 0.35 * h), (x1 + 0.72 * w, y1 + 0.3 * h),
                          (x1 + 0.8 * w, y1 + 0.72 * h)], c, lw),
                ("line", [(x1 + 0.72 * w, y1 + 0.3 * h), (x1 + 0.7 * w, y1 + 0.05 * h)], c, lw)]
    if label == "traffic cone":
        band = P((0.5 - 0.38 * 0.4 / 0.88, 0.4), (0.5 + 0.38 * 0.4 / 0.88, 0.4),
                 (0.5 + 0.38 * 0.55 / 0.88, 0.55), (0.5 - 0.38 * 0.55 / 0.88, 0.55))
        return [("poly", P((0.5, 0.0), (0.88, 0.88), (0.12, 0.88)), c, 0), ("poly", band, CONE_BAND, 0),
                ("rect", R(0.0, 0.86, 1.0, 1.0), c, 0)]
    if label == "barrier":
        prims = [("rect", R(0, 0, 1, 0.6), c, 0)]
        prims += [("poly", P((a, 0.6), (a + 0.1, 0.0), (a + 0.2, 0.0), (a + 0.1, 0.6)), BLACK, 0)
                  for a in (0.05, 0.35, 0.65)]
        prims += [("rect", R(0.08, 0.6, 0.16, 1.0), DARK, 0), ("rect", R(0.84, 0.6, 0.92, 1.0), DARK, 0)]
        return prims
    raise ValueError(f"no drawing for label {label!r}")


def _scenery_shape(item: Scenery, camera: Camera, z: float) -> list[Prim]:
    if item.kind == "pole":
        return _solid(camera.box(item.x_m, z, 0.25, 6.0), POLE)
    trunk = camera.box(item.x_m, z, 0.4, 2.6)
    crown = camera.box(item.x_m, z, 3.6, 6.5)
    crown = (crown[0], crown[1], crown[2], crown[1] + (crown[3] - crown[1]) * 0.65)
    if crown[3] - crown[1] < DETAIL_PX:
        return _solid(crown, CROWN) + _solid(trunk, TRUNK)
    return [("rect", trunk, TRUNK, 0), ("ellipse", crown, CROWN, 0)]


def _paint(draws: Iterable[tuple[ImageDraw.ImageDraw, bool]], prims: list[Prim], ident: int,
           body: RGB | None = None):
    """Paint primitives on each (draw, is_rgb) target: colours on RGB; on the id mask `ident`
    where the colour is the object's `body` colour, `ident + MAX_OBJECTS` for its other parts
    (wheels, windows, stripes), 0 for scenery."""
    for draw, is_rgb in draws:
        for kind, xy, colour, width in prims:
            fill = colour if is_rgb else (ident if not ident or colour == body else ident + MAX_OBJECTS)
            if kind == "rect":
                draw.rectangle(xy, fill=fill)
            elif kind == "rrect":
                r = max(1, int(min(xy[2] - xy[0], xy[3] - xy[1]) * 0.2))
                draw.rounded_rectangle(xy, radius=r, fill=fill)
            elif kind == "ellipse":
                draw.ellipse(xy, fill=fill)
            elif kind == "ring":
                draw.ellipse(xy, outline=fill, width=width)
            elif kind == "poly":
                draw.polygon(xy, fill=fill)
            elif kind == "line":
                draw.line(xy, fill=fill, width=width)


def _background(frame_camera: Camera, style: SceneStyle, travelled: float) -> tuple[Image.Image, list[Prim]]:
    """Sky, ground and skyline as an image, and the road's flat primitives (never occluding)."""
    cam = frame_camera
    W, H = cam.width, cam.height
    hy = int(round(cam.horizon_y))
    arr = np.empty((H, W, 3), dtype=np.uint8)
    a = np.linspace(0.0, 1.0, max(hy, 1))[:, None]
    arr[:hy] = (np.asarray(style.sky_top) * (1 - a) + np.asarray(style.sky_bottom) * a).astype(np.uint8)[:, None, :]
    arr[hy:] = style.ground
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    k = H / 252.0
    for fx1, fx2, hpx, colour in style.skyline:
        draw.rectangle((fx1 * W, cam.horizon_y - hpx * k, fx2 * W, cam.horizon_y + 1), fill=colour)

    def quad(xa: float, xb: float, za: float, zb: float) -> list[tuple[float, float]]:
        return [cam.ground(xa, za), cam.ground(xb, za), cam.ground(xb, zb), cam.ground(xa, zb)]

    near, far = 0.5, 5000.0
    prims: list[Prim] = [
        ("poly", quad(ROAD_RIGHT_M, ROAD_RIGHT_M + SIDEWALK_M, near, far), SIDEWALK, 0),
        ("poly", quad(ROAD_LEFT_M - SIDEWALK_M, ROAD_LEFT_M, near, far), SIDEWALK, 0),
        ("poly", quad(ROAD_LEFT_M, ROAD_RIGHT_M, near, far), style.road, 0),
        ("poly", quad(ROAD_RIGHT_M - 0.3, ROAD_RIGHT_M - 0.15, near, far), MARKING, 0),
        ("poly", quad(ROAD_LEFT_M + 0.15, ROAD_LEFT_M + 0.3, near, far), MARKING, 0),
        ("poly", quad(-0.5 * LANE_M - 0.06, -0.5 * LANE_M + 0.06, near, far), MARKING, 0),  # centre line
    ]
    # dashed lane lines scroll towards the camera as it drives: 3 m dash, 6 m gap
    phase = travelled % 9.0
    for x in (0.5 * LANE_M, -1.5 * LANE_M):
        z = 9.0 - phase
        while z < 200.0:
            za, zb = max(z, near), z + 3.0
            if zb > near:
                prims.append(("poly", quad(x - 0.08, x + 0.08, za, zb), MARKING, 0))
            z += 9.0
    return img, prims


def _layers(frame_camera: Camera, style: SceneStyle, travelled: float,
            objects: list[tuple[int, int, str, float, float]], scenery: Iterable[Scenery],
            ) -> Iterator[tuple[list[Prim], int, RGB | None]]:
    """(primitives, id) in drawing order: far to near, ties by track id, so the mask of
    `_ground_truth` and the image of `render` paint the same pixels. `objects` are
    (id, track, label, x, z); scenery has id 0 (it occludes but is not ground truth)."""
    items: list[tuple] = []
    for item in scenery:
        z = item.s_m - travelled
        if NEAREST_M <= z:
            items.append((z, 0, item.x_m, 0, None, _scenery_shape(item, frame_camera, z)))
    for ident, track, label, x, z in objects:
        look = LOOKS[label]
        items.append((z, 1, track, ident, look.colour,
                      _shape(label, frame_camera.box(x, z, look.width_m, look.height_m))))
    items.sort(key=lambda it: (-it[0], it[1], it[2]))
    for *_, ident, body, prims in items:
        yield prims, ident, body


def _ground_truth(stream_id: str, index: int, t: float, camera: Camera, style: SceneStyle, travelled: float,
                  objs: list[tuple[Track, float, float]], scenery: tuple[Scenery, ...],
                  min_visible_px: int) -> DemoFrame:
    """Rasterise the id mask of the frame and apply the visibility rule."""
    if len(objs) > MAX_OBJECTS:
        raise ValueError(f"more than {MAX_OBJECTS} objects in a frame")
    mask = Image.new("L", (camera.width, camera.height), 0)
    md = ImageDraw.Draw(mask)
    spec = [(k + 1, tr.id, tr.label, x, z) for k, (tr, x, z) in enumerate(objs)]
    for prims, ident, body in _layers(camera, style, travelled, spec, scenery):
        _paint([(md, False)], prims, ident, body)
    m = np.asarray(mask)
    H, W = m.shape
    out = []
    for k, (tr, x, z) in enumerate(objs):
        look = LOOKS[tr.label]
        proj = camera.box(x, z, look.width_m, look.height_m)
        # crop to the projected box (+ a margin for line widths) before searching the mask
        c0, c1 = max(0, int(proj[0]) - 3), min(W, int(math.ceil(proj[2])) + 3)
        r0, r1 = max(0, int(proj[1]) - 3), min(H, int(math.ceil(proj[3])) + 3)
        pixels, painted, box = 0, 0, None
        if c1 > c0 and r1 > r0:
            crop = m[r0:r1, c0:c1]
            body = crop == k + 1
            ys, xs = np.nonzero(body | (crop == k + 1 + MAX_OBJECTS))
            pixels, painted = int(body.sum()), int(len(xs))
            if painted:
                box = Box(tr.label, float(xs.min() + c0), float(ys.min() + r0),
                          float(xs.max() + c0 + 1), float(ys.max() + r0 + 1))
        out.append((z, DemoObject(tr.id, tr.label, x, z, tuple(float(v) for v in proj), pixels, painted, box,
                                  pixels >= min_visible_px)))
    out.sort(key=lambda zo: (-zo[0], zo[1].track))
    return DemoFrame(stream_id, index, t, camera, style, travelled, tuple(o for _, o in out), scenery,
                     min_visible_px)


PLAIN_STYLE = SceneStyle((135, 185, 235), (205, 225, 245), (128, 132, 110), (80, 80, 84), 0.4, ())


def make_frame(objects: Iterable[tuple[str, float, float]], *, width: int = 448, height: int = 252,
               min_visible_px: int = 3, stream_id: str = "demo-manual", index: int = 0,
               travelled_m: float = 0.0) -> DemoFrame:
    """A frame holding exactly the given (label, x_m, z_m) objects on an empty road (no trees,
    poles or skyline), with its ground truth: for tests and hand-made training samples."""
    style = PLAIN_STYLE
    camera = Camera(width, height, 0.8 * width, width / 2, style.horizon_frac * height)
    objs = [(Track(k, label, 0.0, float(x), float(z), 0.0, 0.0), float(x), float(z))
            for k, (label, x, z) in enumerate(objects)]
    for tr, _, z in objs:
        if tr.label not in LOOKS:
            raise ValueError(f"unknown demo class {tr.label!r}; classes: {', '.join(CLASSES)}")
        if z < NEAREST_M:
            raise ValueError(f"an object at {z} m is behind the camera's near limit ({NEAREST_M} m)")
    return _ground_truth(stream_id, index, 0.0, camera, style, travelled_m, objs, (), min_visible_px)


def render(frame: DemoFrame, *, with_mask: bool = False):
    """The frame's RGB image (and, with `with_mask`, the id mask: pixel value k + 1 where the
    k-th object of `frame.objects` shows, 0 elsewhere)."""
    img, road = _background(frame.camera, frame.style, frame.travelled_m)
    draw = ImageDraw.Draw(img)
    _paint([(draw, True)], road, 0)
    targets = [(draw, True)]
    mask = None
    if with_mask:
        mask = Image.new("L", img.size, 0)
        targets.append((ImageDraw.Draw(mask), False))
    spec = [(k + 1, o.track, o.label, o.x_m, o.z_m) for k, o in enumerate(frame.objects)]
    for prims, ident, body in _layers(frame.camera, frame.style, frame.travelled_m, spec, frame.scenery):
        _paint(targets, prims, ident, body)
    return (img, np.asarray(mask)) if with_mask else img


# ---------------------------------------------------------------------------------------------
# The converter


@register_converter
class DemoConverter(Converter):
    name = "demo"
    version = "1"
    layout = "none: the demo world is generated from converter_options (seed, n_streams, frames_per_stream, ...)"
    options = dict(DEFAULTS)

    def convert(self, ctx: ConvertContext) -> list[Stream]:
        opts = self._checked(ctx)
        missing = [c for c in CLASSES if c not in ctx.task.label_space.names]
        if missing:
            raise ConfigError(f"the demo world labels frames with {missing}, which the label space lacks",
                              path=ctx.task.source, key="label_space.labels")
        world = generate_world(fps=ctx.task.fps, **opts)
        k = ctx.task.images_per_query
        streams = []
        for ds in world:
            folder = Path(ctx.work_dir) / ds.id
            paths: list[Path] = []
            frames = []
            for f in ds.frames:
                path = folder / f"{f.index:04d}.png"
                buf = io.BytesIO()
                render(f).save(buf, format="PNG")
                # a full disk raises a WriteError naming the file and never leaves half a PNG
                atomic_write_bytes(path, buf.getvalue(), fsync=False)
                paths.append(path)
                # earlier sampled frames first; the stream's first frames repeat frame 0
                images = [paths[max(0, f.index - j)] for j in range(k - 1, -1, -1)]
                vis = f.visible_objects
                frames.append(ctx.frame(ds.id, f.index, f.timestamp_s, images, f.labels, boxes=f.boxes,
                                        meta={"tracks": [o.track for o in vis], "pixels": [o.pixels for o in vis],
                                              "distance_m": [round(o.z_m, 1) for o in vis]}))
                ctx.advance()
            streams.append(Stream(id=ds.id, task=ctx.task.name, fps=ctx.task.fps, frames=frames,
                                  meta={**ds.meta, "width": opts["width"], "height": opts["height"]}))
        return streams

    def _checked(self, ctx: ConvertContext) -> dict[str, Any]:
        opts = dict(ctx.options)
        src = ctx.task.source
        # (lowest, highest): the upper bounds keep a typo from rendering for hours or filling memory
        ints = {"seed": (0, None), "n_streams": (1, None), "frames_per_stream": (1, None), "width": (32, MAX_SIDE_PX),
                "height": (32, MAX_SIDE_PX), "max_objects": (1, MAX_OBJECTS), "min_visible_px": (1, None)}
        for key, (lo, hi) in ints.items():
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                want = f"an integer >= {lo}" if hi is None else f"an integer {lo}..{hi}"
                raise ConfigError(f"expected {want}, got {v!r}", path=src, key=f"converter_options.{key}")
        floats = {"density": (0.0, MAX_DENSITY), "max_distance_m": (20.0, MAX_DISTANCE_M)}
        for key, (lo, hi) in floats.items():
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"expected a positive finite number, got {v!r}", path=src,
                                  key=f"converter_options.{key}")
            if not lo <= v <= hi:
                raise ConfigError(f"expected {lo:g}..{hi:g}, got {v!r}", path=src, key=f"converter_options.{key}")
            opts[key] = float(v)
        total = opts["n_streams"] * opts["frames_per_stream"]
        if total > MAX_FRAMES:
            raise ConfigError(f"n_streams x frames_per_stream = {total:,} frames; the demo world renders at most "
                              f"{MAX_FRAMES:,} (several GB of PNGs)", path=src, key="converter_options.n_streams")
        if opts["frames_per_stream"] / ctx.task.fps > MAX_STREAM_S:
            raise ConfigError(f"{opts['frames_per_stream']} frames at {ctx.task.fps:g} FPS last more than "
                              f"{MAX_STREAM_S // 3600} hours; the demo road is generated for the whole duration",
                              path=src, key="fps")
        return opts
