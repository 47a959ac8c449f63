"""nuScenes converter, run through the real nuscenes-devkit on a tiny database written here.

The database has the v1.0-mini layout (13 tables, a map record with log_tokens and its PNG), two
real scene names (scene-0061 of mini_train/train, scene-0103 of mini_val/val), CAM_FRONT keyframes
with irregular ~0.5 s timestamps, LIDAR_TOP keyframes and a CAM_FRONT sweep the converter must
ignore, and objects in front of, beside and behind the camera. The expected streams below are
worked out by hand from the geometry (pinhole camera looking along the ego x axis).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgevlm_eval.core.taskconfig import load_merged, task_from_dict
from edgevlm_eval.core.errors import ConfigError, DatasetError
from edgevlm_eval.tasks.streams import load_streams
from edgevlm_eval.tasks import TASKS_DIR, ConvertContext, get_converter

pytestmark = pytest.mark.nuscenes

YAML = TASKS_DIR / "nuscenes.yaml"

# CAM_FRONT calibration: 1.7 m ahead of and 1.5 m above the ego origin, looking along ego +x
# (quaternion [0.5, -0.5, 0.5, -0.5] maps camera x right / y down / z forward to ego -y / -z / +x).
F, CX, CY = 1266.4, 816.3, 491.5
CAM_T = (1.7, 0.0, 1.5)
W, H = 1600, 900


def tok(*parts) -> str:
    """A 32-hex token like the real ones."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


@dataclass
class Obj:
    instance: str
    category: str
    center: tuple[float, float, float]  # ego frame: x forward, y left, z up
    size: tuple[float, float, float] = (1.8, 4.0, 1.6)  # width, length, height
    visibility: str = "4"


@dataclass
class SceneSpec:
    name: str
    location: str
    t0_us: int
    cam_times_s: list[float]
    objects: list[list[Obj]]  # per sample
    ego_t: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ego_yaw_deg: float = 0.0
    sweep_after: list[int] = field(default_factory=list)  # samples followed by a CAM_FRONT sweep


SCENE_A = SceneSpec(
    name="scene-0061", location="singapore-onenorth", t0_us=1532402927612460,
    # 1 FPS targets 0,1,2,3,4 s: 0 -> 0.0, 1 -> 1.05, 2 -> 2.02, 3 -> nothing within 0.5 s (2.49 is
    # 0.51 away, 3.60 is 0.60 away): skipped, 4 -> 4.05.
    cam_times_s=[0.0, 0.44987, 1.05012, 1.5, 2.02, 2.49, 3.60, 4.05],
    ego_t=(300.0, 1100.0, 0.0),
    objects=[
        [Obj("car1", "vehicle.car", (20, 0, 1.5)),
         Obj("cone1", "movable_object.trafficcone", (10, -1.5, 0.4), (0.4, 0.4, 0.8)),
         Obj("truck1", "vehicle.truck", (-15, 0, 1.5)),  # behind the camera
         Obj("stroller1", "human.pedestrian.stroller", (12, 1, 0.8), (0.6, 1.0, 1.1))],  # no detection class
        [Obj("car1", "vehicle.car", (19, 0, 1.5)), Obj("bus1", "vehicle.bus.rigid", (25, 2, 1.8), (2.9, 11, 3.5))],
        [Obj("car1", "vehicle.car", (18, 0, 1.5)),
         Obj("ped1", "human.pedestrian.adult", (12, 1, 1.0), (0.6, 0.6, 1.8)),
         Obj("moto1", "vehicle.motorcycle", (5, 30, 1.0), (0.8, 2.0, 1.5))],  # far left: outside the image
        [Obj("car1", "vehicle.car", (17, 0, 1.5))],
        [Obj("truck2", "vehicle.truck", (-10, 0, 1.5))],  # only an object behind: an empty frame
        [Obj("car1", "vehicle.car", (15, 0, 1.5))],
        [Obj("barrier1", "movable_object.barrier", (9, 0, 0.5), (2.0, 0.4, 1.0))],
        [Obj("constr1", "vehicle.construction", (25, -2, 1.8), (2.5, 6.0, 3.0)),
         Obj("ped2", "human.pedestrian.child", (9, 0.5, 0.8), (0.5, 0.5, 1.2)),
         Obj("bike1", "vehicle.bicycle", (-6, 0, 0.8), (0.6, 1.7, 1.2)),  # behind
         Obj("animal1", "animal", (11, -1, 0.3), (0.3, 0.6, 0.5)),  # no detection class
         Obj("car1", "vehicle.car", (14, 0, 1.5), visibility="1")],  # 0-40 % visible
    ],
    sweep_after=[0, 2],
)

SCENE_B = SceneSpec(
    name="scene-0103", location="boston-seaport", t0_us=1533151603512404,
    # targets 0,1,2 s -> 0.0, 0.98, 2.01
    cam_times_s=[0.0, 0.52, 0.98, 1.49, 2.01],
    ego_t=(1000.0, 600.0, 0.0), ego_yaw_deg=90.0,  # the ego faces world +y: exercises the pose transform
    objects=[
        [Obj("car2", "vehicle.car", (20, 0, 1.5)),
         Obj("ped3", "human.pedestrian.police_officer", (15, -1, 0.9), (0.6, 0.6, 1.8)),
         Obj("truck3", "vehicle.truck", (8, 5, 1.5))],  # partly left of the image: clipped at x = 0
        [Obj("moto2", "vehicle.motorcycle", (12, 0, 1.0), (0.8, 2.0, 1.5))],
        [Obj("trailer1", "vehicle.trailer", (30, 3, 2.0), (2.5, 10.0, 4.0))],
        [],
        [Obj("bus2", "vehicle.bus.bendy", (18, -1, 1.8), (2.9, 18.0, 3.5)),
         Obj("barrier2", "movable_object.barrier", (7, 2, 0.5), (2.0, 0.4, 1.0))],
    ],
)

# Worked out by hand: (timestamp_s, source keyframe j, labels in label-space order).
EXPECTED = {
    "scene-0061": [(0.0, 0, ("car", "traffic cone")),
                   (1.0, 2, ("car", "pedestrian")),
                   (2.0, 4, ()),
                   (4.0, 7, ("car", "construction vehicle", "pedestrian"))],
    "scene-0103": [(0.0, 0, ("car", "truck", "pedestrian")),
                   (1.0, 2, ("trailer",)),
                   (2.0, 4, ("bus", "barrier"))],
}

# The car 20 m ahead (length 4 m along x, 1.8 m wide, 1.6 m high, centre at camera height): its
# nearest face is 18 - 1.7 = 16.3 m from the camera, so the box spans u = CX -/+ F * 0.9 / 16.3 and
# v = CY -/+ F * 0.8 / 16.3.
CAR_20M_BOX = (CX - F * 0.9 / 16.3, CY - F * 0.8 / 16.3, CX + F * 0.9 / 16.3, CY + F * 0.8 / 16.3)
# truck3 at (8, 5): nearest-to-the-image corner x = 10 ahead (z = 8.3 m), y = 4.1 left -> u = CX - F * 4.1 / 8.3.
TRUCK3_X2 = CX - F * 4.1 / 8.3

CATEGORIES = ["human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.police_officer",
              "human.pedestrian.stroller", "animal", "vehicle.car", "vehicle.truck", "vehicle.bus.rigid",
              "vehicle.bus.bendy", "vehicle.trailer", "vehicle.construction", "vehicle.motorcycle",
              "vehicle.bicycle", "movable_object.trafficcone", "movable_object.barrier"]


def _yaw_quat(deg: float) -> list[float]:
    a = math.radians(deg) / 2
    return [math.cos(a), 0.0, 0.0, math.sin(a)]


def _to_world(spec: SceneSpec, p) -> list[float]:
    c, s = math.cos(math.radians(spec.ego_yaw_deg)), math.sin(math.radians(spec.ego_yaw_deg))
    x, y, z = p
    return [spec.ego_t[0] + c * x - s * y, spec.ego_t[1] + s * x + c * y, spec.ego_t[2] + z]


def cam_file(spec: SceneSpec, j: int, sweep: bool = False) -> str:
    ts = spec.t0_us + round(spec.cam_times_s[j] * 1e6) + (250_000 if sweep else 0)
    log = f"n015-{spec.name}"
    return f"{'sweeps' if sweep else 'samples'}/CAM_FRONT/{log}__CAM_FRONT__{ts}.jpg"


def write_db(root: Path, scenes=(SCENE_A, SCENE_B), version="v1.0-mini") -> Path:
    """A loadable nuScenes database in the real layout (records shaped like the real tables)."""
    t: dict[str, list] = {name: [] for name in (
        "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
        "scene", "sample", "sample_data", "sample_annotation", "map")}
    t["category"] = [{"token": tok("cat", c), "name": c, "description": ""} for c in CATEGORIES]
    t["attribute"] = [{"token": tok("attr", a), "name": a, "description": ""}
                      for a in ("vehicle.moving", "vehicle.parked", "pedestrian.standing")]
    t["visibility"] = [{"token": str(i), "level": lvl, "description": f"visibility of whole object is between {lvl}"}
                       for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), start=1)]
    t["sensor"] = [{"token": tok("sensor", "CAM_FRONT"), "channel": "CAM_FRONT", "modality": "camera"},
                   {"token": tok("sensor", "LIDAR_TOP"), "channel": "LIDAR_TOP", "modality": "lidar"}]
    cs_cam, cs_lidar = tok("cs", "CAM_FRONT"), tok("cs", "LIDAR_TOP")
    t["calibrated_sensor"] = [
        {"token": cs_cam, "sensor_token": tok("sensor", "CAM_FRONT"), "translation": list(CAM_T),
         "rotation": [0.5, -0.5, 0.5, -0.5], "camera_intrinsic": [[F, 0.0, CX], [0.0, F, CY], [0.0, 0.0, 1.0]]},
        {"token": cs_lidar, "sensor_token": tok("sensor", "LIDAR_TOP"), "translation": [0.94, 0.0, 1.84],
         "rotation": [0.7071, 0.0, 0.0, -0.7071], "camera_intrinsic": []},
    ]
    instances: dict[tuple[str, str], dict] = {}
    ann_by_inst: dict[tuple[str, str], list[dict]] = {}
    for spec in scenes:
        log_token, scene_token = tok("log", spec.name), tok("scene", spec.name)
        t["log"].append({"token": log_token, "logfile": f"n015-{spec.name}", "vehicle": "n015",
                         "date_captured": "2018-07-24", "location": spec.location})
        samples = [tok("sample", spec.name, j) for j in range(len(spec.cam_times_s))]
        t["scene"].append({"token": scene_token, "log_token": log_token, "nbr_samples": len(samples),
                           "first_sample_token": samples[0], "last_sample_token": samples[-1],
                           "name": spec.name, "description": f"test scene {spec.name}"})
        chains: dict[str, list[dict]] = {"CAM_FRONT": [], "LIDAR_TOP": []}
        rot = _yaw_quat(spec.ego_yaw_deg)

        def add_sd(channel, j, ts, key, filename, w, h):
            sd_token = tok("sd", spec.name, channel, j, key)
            t["ego_pose"].append({"token": sd_token, "timestamp": ts, "rotation": rot,
                                  "translation": list(spec.ego_t)})
            rec = {"token": sd_token, "sample_token": samples[j], "ego_pose_token": sd_token,
                   "calibrated_sensor_token": cs_cam if channel == "CAM_FRONT" else cs_lidar, "timestamp": ts,
                   "fileformat": filename.rsplit(".", 1)[-1], "is_key_frame": key, "height": h, "width": w,
                   "filename": filename, "prev": "", "next": ""}
            chains[channel].append(rec)
            t["sample_data"].append(rec)

        for j, rel in enumerate(spec.cam_times_s):
            cam_ts = spec.t0_us + round(rel * 1e6)
            lidar_ts = cam_ts - 11_700  # the sample's time is the lidar sweep's, a little off the camera's
            t["sample"].append({"token": samples[j], "timestamp": lidar_ts,
                                "prev": samples[j - 1] if j else "",
                                "next": samples[j + 1] if j + 1 < len(samples) else "", "scene_token": scene_token})
            add_sd("LIDAR_TOP", j, lidar_ts, True,
                   f"samples/LIDAR_TOP/n015-{spec.name}__LIDAR_TOP__{lidar_ts}.pcd.bin", 0, 0)
            add_sd("CAM_FRONT", j, cam_ts, True, cam_file(spec, j), W, H)
            if j in spec.sweep_after:  # a non-key camera frame between keyframes belongs to the next sample
                add_sd("CAM_FRONT", j + 1, cam_ts + 250_000, False, cam_file(spec, j, sweep=True), W, H)
            for o in spec.objects[j]:
                key = (spec.name, o.instance)
                if key not in instances:
                    instances[key] = {"token": tok("inst", *key), "category_token": tok("cat", o.category),
                                      "nbr_annotations": 0, "first_annotation_token": "",
                                      "last_annotation_token": ""}
                ann = {"token": tok("ann", spec.name, o.instance, j), "sample_token": samples[j],
                       "instance_token": instances[key]["token"], "visibility_token": o.visibility,
                       "attribute_tokens": [], "translation": _to_world(spec, o.center), "size": list(o.size),
                       "rotation": rot, "prev": "", "next": "", "num_lidar_pts": 5, "num_radar_pts": 0}
                ann_by_inst.setdefault(key, []).append(ann)
                t["sample_annotation"].append(ann)
        for chain in chains.values():
            chain.sort(key=lambda r: r["timestamp"])
            for a, b in zip(chain, chain[1:]):
                a["next"], b["prev"] = b["token"], a["token"]
    for key, anns in ann_by_inst.items():
        for a, b in zip(anns, anns[1:]):
            a["next"], b["prev"] = b["token"], a["token"]
        inst = instances[key]
        inst.update(nbr_annotations=len(anns), first_annotation_token=anns[0]["token"],
                    last_annotation_token=anns[-1]["token"])
        t["instance"].append(inst)
    map_file = f"maps/{tok('map')}.png"
    t["map"] = [{"token": tok("map"), "log_tokens": [r["token"] for r in t["log"]], "category": "semantic_prior",
                 "filename": map_file}]
    tables = root / version
    tables.mkdir(parents=True)
    for name, rows in t.items():
        (tables / f"{name}.json").write_text(json.dumps(rows, indent=1))
    (root / "maps").mkdir()
    (root / map_file).write_bytes(b"")  # the devkit only checks that the mask file exists when loading
    for spec in scenes:
        for j in range(len(spec.cam_times_s)):
            p = root / cam_file(spec, j)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\xff\xd8\xff\xd9")
    return root


def make_task(split="all", fps=None, **options):
    data = load_merged(YAML)
    data["dataset"]["split"] = split
    if fps:
        data["fps"] = fps
    data["converter_options"] = {**data.get("converter_options", {}), "version": "v1.0-mini", **options}
    return task_from_dict(data, source=str(YAML))


@pytest.fixture(scope="module")
def devkit():
    return pytest.importorskip("nuscenes")


@pytest.fixture
def db(tmp_path, devkit) -> Path:
    return write_db(tmp_path / "nuscenes")


def convert(task, root):
    streams, _ = load_streams(task, str(root), use_cache=False)
    return {s.id: s for s in streams}


def test_streams_match_hand_worked_expectation(db):
    streams = convert(make_task("all"), db)
    assert sorted(streams) == ["scene-0061", "scene-0103"]
    for spec in (SCENE_A, SCENE_B):
        s = streams[spec.name]
        got = [(f.timestamp_s, f.labels) for f in s.frames]
        assert got == [(ts, labels) for ts, _, labels in EXPECTED[spec.name]], spec.name
        assert [f.index for f in s.frames] == list(range(len(EXPECTED[spec.name])))
        # the CAM_FRONT keyframe's image, absolute, never the lidar file or the sweep
        assert [f.images for f in s.frames] == [(str((db / cam_file(spec, j)).resolve()),)
                                                for _, j, _ in EXPECTED[spec.name]]
        assert [f.meta["source_time_s"] for f in s.frames] == [spec.cam_times_s[j] for _, j, _ in EXPECTED[spec.name]]
        assert all(f.scored for f in s.frames)  # multi-label: an empty set is a scored answer
        assert s.meta["keyframes"] == len(spec.cam_times_s) and s.meta["location"] == spec.location
    assert streams["scene-0061"].frames[0].query.startswith("Identify which object categories")


def test_boxes_are_projected_and_clipped(db):
    streams = convert(make_task("all"), db)
    a0 = streams["scene-0061"].frames[0]
    car = [b for b in a0.boxes if b.label == "car"]
    assert len(car) == 1
    assert (car[0].x1, car[0].y1, car[0].x2, car[0].y2) == pytest.approx(CAR_20M_BOX, abs=0.011)
    assert {b.label for b in a0.boxes} == {"car", "traffic cone"}  # no box for the stroller or the truck behind
    # Same car geometry in scene B, whose ego is rotated 90 degrees in the world: same pixels.
    b0 = streams["scene-0103"].frames[0]
    car_b = next(b for b in b0.boxes if b.label == "car")
    assert (car_b.x1, car_b.y1, car_b.x2, car_b.y2) == pytest.approx(CAR_20M_BOX, abs=0.011)
    truck = next(b for b in b0.boxes if b.label == "truck")
    assert truck.x1 == 0.0 and truck.x2 == pytest.approx(TRUCK3_X2, abs=0.011)
    near_v = F * 0.8 / 8.3  # the truck's visible corners at 8.3 m span CY -/+ this
    assert 0.0 <= truck.y1 <= CY - near_v + 0.01 and CY + near_v - 0.01 <= truck.y2 <= H
    assert not convert(make_task("all", boxes=False), db)["scene-0061"].frames[0].boxes


def test_two_fps_keeps_every_keyframe_but_the_gap(db):
    streams = convert(make_task("all", fps=2), db)
    # scene-0061 at 2 FPS (tolerance 0.25 s): 3.0 s has no keyframe nearer than 0.51 s -> skipped;
    # 3.5 s -> 3.60.
    a = streams["scene-0061"]
    assert [f.timestamp_s for f in a.frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.5, 4.0]
    assert [f.meta["source_time_s"] for f in a.frames] == [0.0, 0.44987, 1.05012, 1.5, 2.02, 2.49, 3.6, 4.05]
    assert a.frames[1].labels == ("car", "bus") and a.frames[6].labels == ("barrier",)
    assert [f.timestamp_s for f in streams["scene-0103"].frames] == [0.0, 0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize("split, scenes", [("mini_val", ["scene-0103"]), ("val", ["scene-0103"]),
                                           ("mini_train", ["scene-0061"]), ("train", ["scene-0061"])])
def test_split_selects_scenes_via_devkit_splits(db, split, scenes):
    assert sorted(convert(make_task(split), db)) == scenes


def test_visibility_options(db):
    # min_visibility 2 drops scene-0061's last car (visibility token 1 = 0-40 %).
    a = convert(make_task("all", min_visibility=2), db)["scene-0061"]
    assert a.frames[3].labels == ("construction vehicle", "pedestrian")
    # box_visibility all: the truck partly outside the image no longer counts.
    b = convert(make_task("all", box_visibility="all"), db)["scene-0103"]
    assert b.frames[0].labels == ("car", "pedestrian")


def test_split_not_in_tables_and_unknown_split(db):
    with pytest.raises(DatasetError, match="none of the 150 scenes of split 'test'"):
        convert(make_task("test"), db)
    with pytest.raises(ConfigError, match="unknown nuScenes split 'bogus'"):
        convert(make_task("bogus"), db)


def test_bad_inputs_name_the_path(db):
    with pytest.raises(DatasetError) as e:
        convert(make_task("all", version="v1.0-trainval"), db)
    assert str(db / "v1.0-trainval") in str(e.value) and "v1.0-mini" in str(e.value)
    assert "expected layout" in str(e.value)
    with pytest.raises(ConfigError, match="unknown camera 'CAM_BACK'"):
        convert(make_task("all", camera="CAM_BACK"), db)
    with pytest.raises(ConfigError, match="min_visibility"):
        convert(make_task("all", min_visibility=7), db)
    (db / "v1.0-mini" / "sample_annotation.json").unlink()
    with pytest.raises(DatasetError) as e:
        convert(make_task("all"), db)
    assert "sample_annotation" in str(e.value) and str(db / "v1.0-mini" / "sample_annotation.json") in str(e.value)


def test_missing_map_png_is_a_dataset_error(db):
    for p in (db / "maps").iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match="could not load the tables"):
        convert(make_task("all"), db)


def test_missing_devkit_says_how_to_install(tmp_path, monkeypatch):
    """Runs without the devkit too: there the import really fails; with it, it is made to fail."""
    db = write_db(tmp_path / "nuscenes")
    monkeypatch.setitem(sys.modules, "nuscenes.eval.detection.utils", None)
    with pytest.raises(ImportError) as e:
        convert(make_task("all"), db)
    assert isinstance(e.value, DatasetError)
    assert "pip install 'edgevlm-eval[nuscenes]'" in str(e.value)


def test_inputs_are_the_tables(db):
    task = make_task("all")
    conv = get_converter("nuscenes")
    ctx = ConvertContext(task=task, root=db, work_dir=db, options=conv.resolved_options(task))
    files = conv.inputs(ctx)
    assert len(files) == 13 and all(f.is_file() for f in files)
    assert db / "v1.0-mini" / "sample_data.json" in files


def test_label_space_covers_the_devkit_detection_classes(shared_fixtures, devkit):
    """Every detection class the devkit makes from the 23 real categories is a label, and back."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    cats = json.loads((shared_fixtures / "nuscenes" / "tables_excerpt" / "category.json").read_text())
    assert len(cats) == 23
    made = {category_to_detection_name(c["name"]) for c in cats} - {None}
    task = make_task()
    assert {m.replace("_", " ") for m in made} == set(task.label_space.names)
    sensors = json.loads((shared_fixtures / "nuscenes" / "tables_excerpt" / "sensor.json").read_text())
    assert {"channel": "CAM_FRONT", "modality": "camera"}.items() <= next(
        s for s in sensors if s["channel"] == "CAM_FRONT").items()


def test_yaml_answers_map_to_labels():
    task = make_task()
    parse = task.label_space.parse
    assert parse("Two cars, some people and a cone.").labels == ("car", "pedestrian", "traffic cone")
    assert parse("construction vehicles, a motor bike, bikes").labels == ("construction vehicle", "motorcycle",
                                                                          "bicycle")
    assert parse("traffic cones and a barricade").labels == ("traffic cone", "barrier")
    assert parse("none").labels == ()


@pytest.mark.parametrize("options, key", [({"boxes": "no"}, "boxes"), ({"camera": 5}, "camera"),
                                          ({"version": 5}, "version"), ({"version": ""}, "version")])
def test_options_of_the_wrong_type_name_the_key(tmp_path, options, key):
    """Checked before the devkit is imported, so this runs without it."""
    (tmp_path / "nuscenes").mkdir()
    with pytest.raises(ConfigError, match=f"converter_options.{key}"):
        convert(make_task("all", **options), tmp_path / "nuscenes")
