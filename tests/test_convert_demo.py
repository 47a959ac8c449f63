"""The synthetic demo world (tasks/demo.py): determinism, ground truth checked against the rendered
pixels, the visibility rule, motion, sizes, and the converter behind `tasks/demo.yaml`."""

from __future__ import annotations

import io
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.tasks.streams import load_streams
from edgevlm_eval.tasks import TASKS_DIR, load_task
from edgevlm_eval.tasks.demo import (CLASSES, DEFAULTS, LOOKS, MAX_OBJECTS, generate_world, make_frame,
                                     render)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def world_summary(world):
    return [[(f.labels, f.boxes) for f in s.frames] for s in world]


@pytest.fixture(scope="module")
def default_world():
    t = time.perf_counter()
    world = generate_world()
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    images = [[render(f) for f in s.frames] for s in world]
    render_s = time.perf_counter() - t
    n = [len(f.labels) for s in world for f in s.frames]
    print(f"\ndemo default world: {len(world)} streams x {len(world[0].frames)} frames, generated in "
          f"{gen_s:.2f} s, rendered in {render_s:.2f} s; labels per frame mean {statistics.mean(n):.2f} "
          f"min {min(n)} max {max(n)}")
    return world, images, gen_s + render_s


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_world_and_pixels_other_seed_differs():
    a = generate_world(seed=7, n_streams=2, frames_per_stream=6)
    b = generate_world(seed=7, n_streams=2, frames_per_stream=6)
    c = generate_world(seed=8, n_streams=2, frames_per_stream=6)
    assert world_summary(a) == world_summary(b)
    assert [png_bytes(render(f)) for s in a for f in s.frames] == [png_bytes(render(f)) for s in b for f in s.frames]
    assert world_summary(a) != world_summary(c)
    assert png_bytes(render(a[0].frames[0])) != png_bytes(render(c[0].frames[0]))


def test_stream_does_not_depend_on_how_many_streams_or_frames():
    short = generate_world(seed=3, n_streams=2, frames_per_stream=5)
    long = generate_world(seed=3, n_streams=3, frames_per_stream=9)
    assert world_summary(short) == [s[:5] for s in world_summary(long)[:2]]


def test_image_size_changes_the_camera_not_the_world():
    small = generate_world(seed=1, n_streams=1, frames_per_stream=4, width=224, height=126)[0]
    big = generate_world(seed=1, n_streams=1, frames_per_stream=4)[0]
    for fs, fb in zip(small.frames, big.frames):
        assert [(o.track, o.z_m) for o in fs.objects] == [(o.track, o.z_m) for o in fb.objects]
    assert render(small.frames[0]).size == (224, 126)


# -- geometry and the visibility rule, by hand --------------------------------------------------------


def test_projection_and_solid_block_by_hand():
    # 448x252: focal 0.8 * 448 = 358.4 px, horizon at 0.4 * 252 = 100.8, camera 1.5 m high.
    # A pedestrian (0.55 x 1.75 m) at X = -3 m, Z = 120 m: f/Z = 2.98667 px/m, centre u = 224 - 8.96
    # = 215.04, x 214.219..215.861, bottom 100.8 + 1.5 * 2.98667 = 105.28, top 105.28 - 5.2267 = 100.053.
    # Pixel columns whose centre is inside: 214, 215; rows 100..104 -> 2 x 5 = 10 pixels.
    f = make_frame([("pedestrian", -3.0, 120.0)])
    (o,) = f.objects
    assert o.projected == pytest.approx((214.2187, 100.0533, 215.8613, 105.28), abs=1e-3)
    assert (o.pixels, o.painted) == (10, 10)
    assert (o.box.x1, o.box.y1, o.box.x2, o.box.y2) == (214, 100, 216, 105)
    assert o.visible and f.labels == ("pedestrian",) and f.boxes == (o.box,)
    a = np.asarray(render(f))
    assert (a[100:105, 214:216] == LOOKS["pedestrian"].colour).all()
    assert (a == LOOKS["pedestrian"].colour).all(-1).sum() == 10


def test_specks_below_the_rule_are_not_ground_truth():
    # A car at 1000 m is 0.79 x 0.54 px: one pixel, below the 3-pixel rule.
    f = make_frame([("car", 0.0, 1000.0)])
    assert f.objects[0].pixels == 1 and not f.objects[0].visible
    assert f.labels == () and f.boxes == ()
    # the same 10-pixel pedestrian: visible at min_visible_px 10, not at 11
    assert make_frame([("pedestrian", -3.0, 120.0)], min_visible_px=10).labels == ("pedestrian",)
    assert make_frame([("pedestrian", -3.0, 120.0)], min_visible_px=11).labels == ()
    # a traffic cone at 60 m (2.7 x 4.5 px): 3 columns x 5 rows
    cone = make_frame([("traffic cone", 1.75, 60.0)]).objects[0]
    assert cone.pixels == 15 and cone.visible


def test_occluded_object_is_not_ground_truth():
    alone = make_frame([("pedestrian", 0.0, 60.0)])
    assert alone.labels == ("pedestrian",)
    hidden = make_frame([("pedestrian", 0.0, 60.0), ("bus", 0.0, 15.0)])
    ped = next(o for o in hidden.objects if o.label == "pedestrian")
    assert ped.pixels == 0 and hidden.labels == ("bus",)


def test_nearer_objects_are_bigger():
    sizes = [make_frame([("car", 0.0, z)]).objects[0].box for z in (8.0, 16.0, 32.0, 64.0)]
    widths = [b.x2 - b.x1 for b in sizes]
    assert widths == sorted(widths, reverse=True)
    assert widths[0] / widths[3] == pytest.approx(8.0, rel=0.1)  # size ~ 1 / distance


# -- ground truth against the rendered image -----------------------------------------------------------


def test_ground_truth_matches_rendered_pixels(default_world):
    world, images, _ = default_world
    checked = 0
    for s, imgs in zip(world[:4], images[:4]):
        for f, img in zip(s.frames, imgs):
            a = np.asarray(img)
            _, mask = render(f, with_mask=True)
            for k, o in enumerate(f.objects):
                # the render pass paints exactly what the ground-truth pass counted
                assert int((mask == k + 1).sum()) == o.pixels
                assert int((mask == k + 1).sum() + (mask == k + 1 + MAX_OBJECTS).sum()) == o.painted
                if o.visible:
                    b = o.box
                    region = a[int(b.y1):int(b.y2), int(b.x1):int(b.x2)]
                    own = (region == LOOKS[o.label].colour).all(-1).sum()
                    assert own >= f.min_visible_px, (f.stream_id, f.index, o)
                    checked += 1
            for label in CLASSES:
                colour_px = int((a == LOOKS[label].colour).all(-1).sum())
                n_obj = sum(o.label == label for o in f.objects)
                if label in f.labels:
                    assert colour_px >= f.min_visible_px
                else:  # every object of the class shows fewer pixels than the rule
                    assert colour_px <= (f.min_visible_px - 1) * n_obj, (f.stream_id, f.index, label)
    assert checked > 200


def test_labels_are_the_visible_classes_in_class_order(default_world):
    world, _, _ = default_world
    for s in world:
        for f in s.frames:
            expected = tuple(c for c in CLASSES if any(o.label == c and o.pixels >= 3 for o in f.objects))
            assert f.labels == expected
            assert [b.label for b in f.boxes] == [o.label for o in f.objects if o.pixels >= 3]


# -- the default world's statistics -------------------------------------------------------------------


def test_default_world_is_quick(default_world):
    _, _, seconds = default_world
    assert seconds < 20


def test_every_class_appears_and_label_counts_vary(default_world):
    world, _, _ = default_world
    seen = {lab for s in world for f in s.frames for lab in f.labels}
    assert seen == set(CLASSES)
    n = [len(f.labels) for s in world for f in s.frames]
    assert min(n) <= 2 and max(n) >= 6
    assert 2.0 <= statistics.mean(n) <= 7.0


def test_small_and_large_objects(default_world):
    world, _, _ = default_world
    sides = np.array([max(b.x2 - b.x1, b.y2 - b.y1) for s in world for f in s.frames for b in f.boxes])
    assert (sides < 8).sum() >= 50  # distant objects a small model may miss
    assert 0.1 <= (sides < 8).mean() <= 0.6
    assert (sides >= 64).sum() >= 20  # and near ones anyone sees
    # specks that the rule leaves out exist too
    assert any(0 < o.pixels < 3 for s in world for f in s.frames for o in f.objects)


def test_objects_persist_and_move_smoothly(default_world):
    world, _, _ = default_world
    moves, lifetimes = [], []
    for s in world:
        seen: dict[int, int] = {}
        for a, b in zip(s.frames, s.frames[1:]):
            prev = {o.track: o.box for o in a.objects if o.visible}
            for o in b.objects:
                if o.visible and o.track in prev:
                    p, q = prev[o.track], o.box
                    moves.append(np.hypot((p.x1 + p.x2 - q.x1 - q.x2) / 2, (p.y1 + p.y2 - q.y1 - q.y2) / 2))
        for f in s.frames:
            for o in f.objects:
                if o.visible:
                    seen[o.track] = seen.get(o.track, 0) + 1
        lifetimes += list(seen.values())
    moves = np.array(moves)
    assert np.median(moves) < 5  # most objects drift a few pixels per second
    assert np.percentile(moves, 90) < 40
    assert moves.max() < 448 / 2  # even near, fast ones stay in view for a while
    assert statistics.median(lifetimes) >= 5  # objects stay visible for several seconds


def test_objects_enter_and_leave():
    world = generate_world(seed=0, n_streams=8, frames_per_stream=20)
    entered = left = 0
    for s in world:
        for a, b in zip(s.frames, s.frames[1:]):
            ta = {o.track for o in a.objects}
            tb = {o.track for o in b.objects}
            entered += len(tb - ta)
            left += len(ta - tb)
    assert entered >= 10 and left >= 10


# -- the converter and its YAML ---------------------------------------------------------------------------


def test_shipped_yaml_matches_the_code():
    task = load_task("demo")
    assert task.needs_data is False and task.resolve_root() is None
    assert task.label_space.names == list(CLASSES)
    assert task.converter_options == DEFAULTS
    assert task.fps == 1.0 and task.images_per_query == 1
    # synonyms map answers onto the labels
    assert task.label_space.parse("two cars, a person and some cones").labels == ("car", "pedestrian", "traffic cone")


def write_task(tmp_path: Path, body: str) -> Path:
    base = os.path.relpath(TASKS_DIR / "demo.yaml", tmp_path)
    p = tmp_path / "demo_small.yaml"
    p.write_text(f"include: {base}\nname: demo_small\n{body}", encoding="utf-8")
    return p


def test_converter_writes_pngs_that_match_the_api(tmp_path):
    task = load_task(str(write_task(tmp_path, "converter_options: {n_streams: 2, frames_per_stream: 4, seed: 5}\n")))
    streams, info = load_streams(task)
    assert not info["cache_hit"]
    world = generate_world(seed=5, n_streams=2, frames_per_stream=4)
    assert [s.id for s in streams] == ["demo-000", "demo-001"]
    for s, ws in zip(streams, world):
        assert s.meta["theme"] == ws.theme and s.meta["width"] == 448
        assert [f.timestamp_s for f in s.frames] == [0.0, 1.0, 2.0, 3.0]
        for f, wf in zip(s.frames, ws.frames):
            assert f.labels == wf.labels and f.boxes == wf.boxes
            assert f.query == task.query and len(f.images) == 1
            assert Path(f.images[0]).name == f"{f.index:04d}.png"
            on_disk = np.asarray(Image.open(f.images[0]).convert("RGB"))
            assert on_disk.shape == (252, 448, 3)
            assert (on_disk == np.asarray(render(wf))).all()
            assert f.meta["pixels"] == [o.pixels for o in wf.visible_objects]
    again, info2 = load_streams(task)
    assert info2["cache_hit"] and [f.labels for f in again[0].frames] == [f.labels for f in streams[0].frames]


def test_two_images_per_query_send_previous_and_current(tmp_path):
    task = load_task(str(write_task(tmp_path, "images_per_query: 2\nconverter_options: {n_streams: 1, "
                                              "frames_per_stream: 3}\n")))
    (s,) = load_streams(task)[0]
    names = [[Path(p).name for p in f.images] for f in s.frames]
    assert names == [["0000.png", "0000.png"], ["0000.png", "0001.png"], ["0001.png", "0002.png"]]


@pytest.mark.parametrize("opts, key", [("{n_streams: 0}", "n_streams"), ("{width: 10.5}", "width"),
                                       ("{density: -1}", "density"), ("{max_objects: 1000}", "max_objects"),
                                       ("{seeds: 3}", "seeds")])
def test_bad_options_name_the_key(tmp_path, opts, key):
    task = load_task(str(write_task(tmp_path, f"converter_options: {opts}\n")))
    with pytest.raises(ConfigError, match=f"converter_options.{key}"):
        load_streams(task)


@pytest.mark.parametrize("opts, key, message", [
    ("{width: 100000, height: 100000, n_streams: 1, frames_per_stream: 1}", "width", "an integer 32..4096"),
    ("{n_streams: 1000000000}", "n_streams", "renders at most 100,000"),
    ("{density: .nan}", "density", "a positive finite number"),
    ("{density: .inf}", "density", "a positive finite number"),
    ("{density: 1000}", "density", "expected 0..100"),
    ("{max_distance_m: .inf}", "max_distance_m", "a positive finite number"),
    ("{max_distance_m: 1000000000}", "max_distance_m", "expected 20..1000"),
])
def test_options_that_would_hang_or_crash_are_refused(tmp_path, no_hang, opts, key, message):
    task = load_task(str(write_task(tmp_path, f"converter_options: {opts}\n")))
    with pytest.raises(ConfigError, match=message) as e:
        no_hang(load_streams, task, seconds=20)
    assert f"converter_options.{key}" in str(e.value)


def test_a_tiny_rate_would_generate_a_road_for_years(tmp_path, no_hang):
    body = "fps: 1.0e-9\nconverter_options: {n_streams: 1, frames_per_stream: 2}\n"
    task = load_task(str(write_task(tmp_path, body)))
    with pytest.raises(ConfigError, match="key 'fps': 2 frames at 1e-09 FPS last more than 24 hours"):
        no_hang(load_streams, task, seconds=20)


def test_images_that_cannot_be_written_name_the_file(tmp_path, monkeypatch):
    from edgevlm_eval.core.io import WriteError

    monkeypatch.setenv("EDGEVLM_CACHE_DIR", str(tmp_path / "cache"))
    task = load_task(str(write_task(tmp_path, "converter_options: {n_streams: 1, frames_per_stream: 2}\n")))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "streams").write_text("a file where the cache folder should be")
    with pytest.raises(WriteError) as e:
        load_streams(task)
    assert str(e.value).startswith(f"cannot write {tmp_path / 'cache' / 'streams'}/demo_small-")
    assert "/demo-000/0000.png: Not a directory [ENOTDIR]; nothing was written" in str(e.value)
