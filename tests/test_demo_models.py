"""The shipped demo checkpoints (scripts/train_demo_models.py, docs/demo.md): they load with the
network unreachable through the Qwen adapter, and score above measured floors on a fixed seeded
demo world (seed 0, the demo task's evaluation seed; training used seeds >= 1000).

Floors are the measured values (docs/demo.md) minus a margin for float differences between
machines; the orderings are the point: demo-lvlm well above demo-svlm, and demo-svlm helped by a
correct history (what edgeVLM's Context Transfer gives it)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgevlm_eval import model_adapters  # noqa: E402
from edgevlm_eval.core.metrics import Scored, compute  # noqa: E402
from edgevlm_eval.tasks import load_task  # noqa: E402
from edgevlm_eval.tasks.demo import generate_world, render  # noqa: E402
from edgevlm_eval.core.types import HistoryEntry, Request  # noqa: E402

CHECKPOINTS = Path(model_adapters.__file__).resolve().parent / "checkpoints"

# Measured on seed 0, 4 streams x 10 frames (docs/demo.md): svlm 0.609, svlm with correct
# history 0.672, lvlm 0.705, lvlm asked for boxes 0.715; floors ~0.03 lower.
FLOOR = {"svlm": 0.58, "svlm_history": 0.64, "lvlm": 0.67, "lvlm_grounding": 0.68}
LVLM_MARGIN = 0.07  # demo-lvlm - demo-svlm, plain prompts (measured 0.096; 0.124 on the task's 32 x 20 world)
HISTORY_GAIN = 0.04  # demo-svlm with correct snippets - without (measured 0.063)
BOXES_ON_OBJECT = 0.50  # share of boxes for a present class that overlap an object of it (measured 0.63)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-frames")
    streams = generate_world(seed=0, n_streams=4, frames_per_stream=10)
    paths = {}
    for st in streams:
        for f in st.frames:
            p = folder / f"{st.id}_{f.index:02d}.png"
            render(f).save(p, format="PNG")
            paths[(st.id, f.index)] = str(p)
    return streams, paths


@pytest.fixture(scope="module")
def no_network():
    """Any connection attempt fails loudly (loading must not touch a hub)."""
    mp = pytest.MonkeyPatch()

    def refuse(*a, **k):
        raise OSError("network access attempted during an offline test")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket, "create_connection", refuse)
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


def _load(kind: str):
    from edgevlm_eval.model_adapters.qwen2_5_vl import QwenVLAdapter

    folder = CHECKPOINTS / f"demo-{kind}"
    assert (folder / "model.safetensors").is_file(), f"missing shipped checkpoint {folder}"
    # The pixel budget is the checkpoint's own (its preprocessor config), as a registry entry gives it.
    pp = json.loads((folder / "preprocessor_config.json").read_text())
    return QwenVLAdapter(str(folder), name=f"demo-{kind}", dtype="float32", min_pixels=pp["min_pixels"],
                         max_pixels=pp["max_pixels"], max_new_tokens=192 if kind == "lvlm" else 32, batch_size=8)


@pytest.fixture(scope="module")
def svlm(no_network):
    torch.set_num_threads(1)
    return _load("svlm")


@pytest.fixture(scope="module")
def lvlm(no_network):
    torch.set_num_threads(1)
    return _load("lvlm")


def _requests(world, task, history: bool = False, grounding: bool = False):
    streams, paths = world
    reqs, truth = [], []
    for st in streams:
        for k, f in enumerate(st.frames):
            hist = ()
            if history:  # CRM snippets with the right labels of frames t-2 and t-1
                hist = tuple(HistoryEntry(images=(paths[(st.id, j)],), kind="snippet", frame_index=j, source="lvlm",
                                          text=task.history_snippet(k - j, st.frames[j].labels), age_s=float(k - j))
                             for j in (k - 2, k - 1) if j >= 0)
            reqs.append(Request(id=f"{st.id}-{k}", images=(paths[(st.id, f.index)],), query=task.query,
                                history=hist, grounding=grounding))
            truth.append(f.labels)
    return reqs, truth


def _f1(replies, truth, task) -> float:
    items = [Scored(t, task.label_space.parse(r.text).labels if r.ok else None) for t, r in zip(truth, replies)]
    return compute(items, task.label_space, ["micro_f1"])["micro_f1"]


@pytest.fixture(scope="module")
def scores(world, svlm, lvlm):
    task = load_task("demo")
    out = {}
    reqs, truth = _requests(world, task)
    out["svlm"] = _f1(svlm.generate(reqs), truth, task)
    out["lvlm"] = _f1(lvlm.generate(reqs), truth, task)
    reqs_h, _ = _requests(world, task, history=True)
    out["svlm_history"] = _f1(svlm.generate(reqs_h), truth, task)
    reqs_g, _ = _requests(world, task, grounding=True)
    grounded = lvlm.generate(reqs_g)
    out["lvlm_grounding"] = _f1(grounded, truth, task)
    out["grounded"] = grounded
    return out


def test_checkpoints_are_small_and_fp16():
    for kind in ("svlm", "lvlm"):
        folder = CHECKPOINTS / f"demo-{kind}"
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        assert size < 8e6, f"{folder} is {size / 1e6:.1f} MB"
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model_type"] == "qwen2_5_vl"
    # the SVLM sees a quarter of the LVLM's pixels
    px = {k: json.loads((CHECKPOINTS / f"demo-{k}" / "preprocessor_config.json").read_text())["max_pixels"]
          for k in ("svlm", "lvlm")}
    assert px["svlm"] * 3 < px["lvlm"]


def test_lvlm_well_above_svlm(scores):
    assert scores["svlm"] >= FLOOR["svlm"]
    assert scores["lvlm"] >= FLOOR["lvlm"]
    assert scores["lvlm"] - scores["svlm"] >= LVLM_MARGIN, scores


def test_svlm_uses_correct_history(scores):
    assert scores["svlm_history"] >= FLOOR["svlm_history"]
    assert scores["svlm_history"] - scores["svlm"] >= HISTORY_GAIN, scores


def test_lvlm_grounding_replies_parse_to_boxes(scores, world):
    assert scores["lvlm_grounding"] >= FLOOR["lvlm_grounding"]
    streams, _ = world
    frames = [f for st in streams for f in st.frames]
    space = load_task("demo").label_space
    grounded = scores["grounded"]
    total = 0
    for rep, f in zip(grounded, frames):
        assert rep.ok
        # the answer part is separated from the JSON, boxes are in the frame's own pixels
        assert "bbox_2d" not in rep.text and "bbox_2d" in rep.raw_text
        assert all(0 <= b.x1 < b.x2 <= 448 and 0 <= b.y1 < b.y2 <= 252 for b in rep.rois)
        assert {b.label for b in rep.rois} <= set(space.names)
        assert len({b.label for b in rep.rois}) == len(rep.rois)  # one box per class (the largest)
        total += len(rep.rois)
    # about one box per named class (measured 219 boxes on these 40 frames)
    assert total >= 3 * len(frames)


def _overlaps(a, b) -> bool:
    return min(a.x2, b.x2) > max(a.x1, b.x1) and min(a.y2, b.y2) > max(a.y1, b.y1)


def test_lvlm_boxes_land_on_their_objects(scores, world):
    """Visual Focus needs boxes where the objects are: most boxes for a class that is in the frame
    overlap an object of that class (the grid-snapped box of a 5-pixel speck is one 28x28 cell)."""
    streams, _ = world
    frames = [f for st in streams for f in st.frames]
    named = on_object = 0
    for rep, f in zip(scores["grounded"], frames):
        for roi in rep.rois:
            if roi.label not in f.labels:
                continue
            named += 1
            on_object += any(_overlaps(roi, b) for b in f.boxes if b.label == roi.label)
    assert named >= 2 * len(frames)
    assert on_object >= BOXES_ON_OBJECT * named, (on_object, named)
