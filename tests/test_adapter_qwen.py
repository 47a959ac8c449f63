"""Qwen2.5-VL family adapter on the tiny model: batching, prompts, pixel budget, Visual Focus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.model_adapters.focus import FocusPlan, ImageFocus, TokenGrid, grvr_weights, scale_rows
from edgevlm_eval.model_adapters.qwen2_5_vl import QwenVLAdapter, forward_logits
from edgevlm_eval.model_adapters.registry import load_adapter
from edgevlm_eval.core.types import Box, Focus, HistoryEntry, Request

SNIPPET = "This is the image from 1 seconds ago; detected car."


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Random RGB frames of several sizes (PNG), one corrupt file."""
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(224, 224), (300, 200), (448, 224), (200, 300), (280, 140), (336, 224)]):
        p = d / f"f{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    bad = d / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    thin = d / "thin.png"
    Image.new("RGB", (3000, 10)).save(thin)
    return {"ok": paths, "corrupt": str(bad), "thin": str(thin)}


@pytest.fixture(scope="module")
def adapter():
    return load_adapter("tiny-qwen2.5-vl", max_new_tokens=6)


def _requests(paths, n=8):
    reqs = []
    for i in range(n):
        cur = paths[i % len(paths)]
        hist = (HistoryEntry(images=(paths[(i + 1) % len(paths)],), text=SNIPPET),)
        if i % 3 == 1:  # native multi-turn history
            hist = (HistoryEntry(images=(paths[(i + 2) % len(paths)],), text="car", kind="turn", query="What is there?"),)
        if i % 4 == 3:  # two current images (IPN Hand)
            reqs.append(Request(id=str(i), images=(paths[(i + 3) % len(paths)], cur), query="Which gesture?",
                                history=hist))
        else:
            reqs.append(Request(id=str(i), images=(cur,), query="Identify which object categories appear.",
                                history=hist, max_new_tokens=4 + i % 3))
    return reqs


def test_batched_equals_one_by_one(adapter, frames):
    reqs = _requests(frames["ok"], 8)
    batched = adapter.generate(reqs)
    single = [adapter.generate([r])[0] for r in reqs]
    assert all(r.ok for r in batched)
    assert [r.text for r in batched] == [r.text for r in single]
    for a, b, req in zip(batched, single, reqs):
        assert a.completion_tokens == b.completion_tokens <= (req.max_new_tokens or 6)
        np.testing.assert_allclose(a.token_probs, b.token_probs, atol=1e-5)
        assert a.visual_tokens == b.visual_tokens and a.prompt_tokens == b.prompt_tokens
        assert all(0.0 < p <= 1.0 for p in a.token_probs)
    assert batched[0].timings["batch_size"] == 8.0 and single[0].timings["batch_size"] == 1.0


def test_visual_token_counts_by_hand(adapter, frames):
    # tiny entry budget: max_pixels = 28*28*64. 224x224 -> 8x8 cells; 300x200 -> smart_resize to 308x196
    # (round to 28: 11x7 = 77 cells > 64, so scaled down: floor(200/beta/28)*28 with beta = sqrt(60000/50176)
    # -> 168 x 252: 6 x 9 = 54 cells).
    req = Request(id="a", images=(frames["ok"][0],), query="q", history=(HistoryEntry(images=(frames["ok"][1],),
                                                                                        text=SNIPPET),))
    rep = adapter.generate([req])[0]
    assert rep.visual_tokens == 64 + 54
    assert rep.visual_tokens_kept == rep.visual_tokens
    assert rep.focus_applied == {}


def test_corrupt_image_gives_invalid_reply_batch_goes_on(adapter, frames, monkeypatch):
    reqs = [Request(id=r.id, images=r.images, query=r.query, history=r.history) for r in _requests(frames["ok"], 3)]
    monkeypatch.setattr(adapter, "max_new_tokens", 2)
    bad = Request(id="bad", images=(frames["corrupt"],), query="q")
    thin = Request(id="thin", images=(frames["thin"],), query="q")  # aspect ratio 300: the processor refuses
    missing = Request(id="missing", images=(frames["ok"][0] + ".nope",), query="q")
    reps = adapter.generate([reqs[0], bad, reqs[1], missing, reqs[2], thin])
    assert [r.ok for r in reps] == [True, False, True, False, True, False]
    assert "corrupt image" in reps[1].error and "missing image" in reps[3].error
    assert "aspect ratio" in reps[5].error
    # The good ones are unaffected by the bad ones in their batch.
    assert [r.text for r in (reps[0], reps[2], reps[4])] == [r.text for r in adapter.generate(reqs)]


def test_tiny_adapter_from_saved_checkpoint(tmp_path, frames):
    from edgevlm_eval.model_adapters.tiny import save_tiny_qwen

    path = save_tiny_qwen(tmp_path / "ckpt")
    disk = load_adapter(f"qwen2_5_vl:{path}?max_pixels=50176&max_new_tokens=5&dtype=float32")
    mem = load_adapter("tiny-qwen2.5-vl", max_new_tokens=5)
    reqs = _requests(frames["ok"], 3)
    assert [r.text for r in disk.generate(reqs)] == [r.text for r in mem.generate(reqs)]
    assert (disk.min_pixels, disk.max_pixels) == (3136, 50176)  # min from the checkpoint, max from the spec
    # Without a budget in the spec, the checkpoint's own preprocessor config gives it.
    import json

    pp = path / "preprocessor_config.json"
    cfg = json.loads(pp.read_text())
    cfg.pop("size", None)
    cfg.update(min_pixels=1568, max_pixels=28 * 28 * 30)
    pp.write_text(json.dumps(cfg))
    own = load_adapter(f"qwen2_5_vl:{path}?max_new_tokens=2")
    assert (own.min_pixels, own.max_pixels) == (1568, 23520)
    assert own.generate([Request(id="o", images=(frames["ok"][2],), query="q")])[0].visual_tokens <= 30
    with pytest.raises(ConfigError, match="checkpoint folder not found"):
        load_adapter(f"qwen2_5_vl:{path}-missing")


def test_generic_hf_adapter_matches_qwen_adapter(frames):
    """The generic adapter renders the prompt with the processor's own chat template and lets
    transformers compute M-RoPE positions; the Qwen adapter builds both itself. Same tokens out."""
    hf = load_adapter("tiny-hf", max_new_tokens=6)
    qw = load_adapter("tiny-qwen2.5-vl", max_new_tokens=6)
    reqs = _requests(frames["ok"], 4)[1:]  # a native turn, a snippet, two current images
    a, b = hf.generate(reqs), qw.generate(reqs)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.prompt_tokens for r in a] == [r.prompt_tokens for r in b]
    assert hf.capabilities.token_focus is False and qw.capabilities.token_focus is True
    # a request the processor refuses fails alone, the rest of its batch still answers
    mixed = hf.generate([reqs[0], Request(id="thin", images=(frames["thin"],), query="q")])
    assert mixed[0].text == a[0].text and not mixed[1].ok and "aspect ratio" in mixed[1].error
    # qwen_abs grounding through the generic adapter uses the processor's resize (tiny budget 50176)
    assert load_adapter("tiny-hf", grounding_coords="qwen_abs")._resized((300, 200)) == (252, 168)


def test_real_image_processor_checkpoint_limits_1600x900():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from edgevlm_eval.core.grounding import qwen_resized_size

    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": 3136, "longest_edge": 12845056})
    out = ip(images=[Image.new("RGB", (1600, 900))], return_tensors="pt")
    t, h, w = out["image_grid_thw"][0].tolist()
    assert (t, h, w) == (1, 64, 114)
    assert t * h * w // 4 == 1824  # the paper's 1824 tokens
    assert qwen_resized_size(1600, 900) == (1596, 896)
    grid = TokenGrid.from_thw((1600, 900), (t, h, w))
    assert grid.tokens == 1824 and grid.resized == (1596, 896)


# ------------------------------------------------------------------------------------------- GGVR


def test_roi_cells_by_hand():
    g = TokenGrid(orig_w=224, orig_h=224, grid_h=8, grid_w=8)  # no resize: 28 px cells
    m = g.roi_mask(Box("car", 30, 30, 80, 60)).view(8, 8)
    # x 30..80 overlaps columns 1 (28-56) and 2 (56-84); y 30..60 rows 1 and 2.
    assert m.sum() == 4 and m[1:3, 1:3].all()
    # A box exactly on cell borders covers no neighbour: x 28..56 is column 1 only.
    assert g.roi_mask(Box("a", 28, 0, 56, 28)).view(8, 8).nonzero().tolist() == [[0, 1]]
    # Resized image: 300x200 shown as 252x168 (scale 0.84): x 30..80 -> 25.2..67.2 = cols 0-2, y 30..60 -> rows 0-1.
    g2 = TokenGrid(orig_w=300, orig_h=200, grid_h=6, grid_w=9)
    assert g2.roi_mask(Box("car", 30, 30, 80, 60)).sum() == 6
    assert g2.roi_mask(Box("car", 50, 50, 50, 90)).sum() == 0  # zero width
    # 1600x900 under the checkpoint limits: 1596x896, 57x32 cells. x 100..200 -> 99.75..199.5 px = cols 3..7,
    # y 100..150 -> 99.56..149.33 px = rows 3..5: 5 x 3 = 15 of 1824 tokens.
    g3 = TokenGrid.from_thw((1600, 900), (1, 64, 114))
    m3 = g3.roi_mask(Box("car", 100, 100, 200, 150)).view(32, 57)
    assert m3.sum() == 15 and m3[3:6, 3:8].all()


def test_ggvr_pruned_logits_match_masked_full_run(adapter, frames):
    roi = Box("car", 30, 30, 80, 60)
    big = Box("car", 0, 0, 20, 20)  # a smaller second 'car' box: only the largest per label counts
    hist = (HistoryEntry(images=(frames["ok"][2],), text="older", kind="snippet"),
            HistoryEntry(images=(frames["ok"][1],), text=SNIPPET, source="lvlm"))
    req = Request(id="g", images=(frames["ok"][0],), query="Identify which object categories appear.",
                  history=hist, focus=Focus(prune={1: (roi, big)}))
    prep = adapter.prepare([req])
    row = prep.rows[0]
    # History entry 1's image is 300x200 -> 9x6 cells; the ROI covers 3 x 2 = 6 cells (see above).
    dropped = 54 - 6
    # 448x224 under max_pixels 50176: scaled by sqrt(2) and floored to 28 -> 308x140 = 11x5 cells.
    assert [g.tokens for g in row.grids] == [55, 54, 64]
    assert row.visual_tokens == 55 + 54 + 64
    n_full = len(row.full_ids)
    assert len(row.ids) == n_full - dropped
    assert row.visual_tokens_kept == row.visual_tokens - dropped
    pruned = forward_logits(adapter, prep.model_inputs, prep.plan)[0]
    full = adapter.prepare([req], apply_prune=False)
    inputs = dict(full.model_inputs)
    inputs["attention_mask"] = row.seq_keep.long()[None]  # dropped tokens masked out
    inputs["position_ids"] = row.full_positions[:, None, :]  # positions of the full prompt
    masked = forward_logits(adapter, inputs, None)[0][row.seq_keep]
    assert pruned.shape == masked.shape
    assert torch.allclose(pruned, masked, atol=1e-5)
    # And the kept image tokens keep the positions they had in the full image.
    keep_pos = row.full_positions[:, row.seq_keep]
    assert torch.equal(row.positions, keep_pos)


def test_ggvr_reply_reports_counts_and_focus(adapter, frames):
    hist = (HistoryEntry(images=(frames["ok"][1],), text=SNIPPET, source="lvlm"),)
    focus = Focus(prune={0: (Box("car", 30, 30, 80, 60),)})
    req = Request(id="g", images=(frames["ok"][0],), query="q", history=hist, focus=focus)
    rep = adapter.generate([req])[0]
    assert rep.visual_tokens == 64 + 54 and rep.visual_tokens_kept == 64 + 6
    assert rep.focus_applied["ggvr"] == [{"entry": 0, "rois": 1, "tokens": 54, "kept": 6}]
    plain = adapter.generate([Request(id="p", images=req.images, query="q", history=hist)])[0]
    assert plain.prompt_tokens - rep.prompt_tokens == 48
    # No ROI, or ROIs outside the image: the image is kept whole and the reply says why.
    none = adapter.generate([Request(id="n", images=req.images, query="q", history=hist,
                                     focus=Focus(prune={0: (Box("car", 400, 400, 500, 500),)}))])[0]
    # focus_applied holds only what was applied: empty here (the reason is logged)
    assert none.visual_tokens_kept == none.visual_tokens and none.focus_applied == {}
    prep = adapter.prepare([Request(id="n", images=req.images, query="q", history=hist,
                                    focus=Focus(prune={0: (Box("car", 400, 400, 500, 500),)}))])
    assert prep.rows[0].focus_skipped == {"ggvr[0]": "ROIs cover no token: image kept whole"}


def test_batch_mixing_pruned_and_plain_requests_matches_single(adapter, frames):
    hist = (HistoryEntry(images=(frames["ok"][1],), text=SNIPPET),)
    f = Focus(prune={0: (Box("car", 30, 30, 80, 60),)}, reweight_source=0,
              reweight_rois=(Box("car", 30, 30, 80, 60),))
    reqs = [Request(id="a", images=(frames["ok"][0],), query="q", history=hist, focus=f),
            Request(id="b", images=(frames["ok"][3],), query="q", history=hist),
            Request(id="c", images=(frames["ok"][4],), query="q", history=hist, focus=f)]
    batched = adapter.generate(reqs)
    single = [adapter.generate([r])[0] for r in reqs]
    assert [r.text for r in batched] == [r.text for r in single]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.token_probs, b.token_probs, atol=1e-5)


# ------------------------------------------------------------------------------------------- GRVR


def test_scale_rows_exact():
    torch.manual_seed(0)
    x = torch.randn(10, 8)
    assert torch.equal(scale_rows(x, torch.ones(10)), x)
    w = torch.rand(10) + 0.5
    out = scale_rows(x, w)
    for k in range(10):
        assert torch.equal(out[k], x[k] * w[k])


def test_grvr_weights_by_hand():
    # Source image 2x2 cells of 28 px (56x56), target has 3 tokens, features in 2-D.
    src_grid = TokenGrid(orig_w=56, orig_h=56, grid_h=2, grid_w=2)
    source = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    target = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    rois = [Box("car", 0, 0, 56, 28),  # top row: tokens 0, 1 -> f = (2, 0)
            Box("person", 0, 28, 28, 56)]  # bottom-left: token 2 -> f = (0, 1)
    res = grvr_weights(source, src_grid, rois, target, alpha=0.7, mu=1.0)
    # cos with (1,0): [1, 0, 1/sqrt2]; with (0,1): [0, 1, 1/sqrt2]; mean s = [0.5, 0.5, 1/sqrt2]
    s = torch.tensor([0.5, 0.5, 1 / np.sqrt(2)], dtype=torch.float32)
    w_s = 1.0 * torch.sigmoid(s) + 0.5
    assert res.categories == ["car", "person"]
    assert torch.allclose(res.weights, 0.7 + 0.3 * w_s, atol=1e-6)
    # mu = 0 makes W_s = b = 1: nothing changes (eq. 10 with 0.5 mu + b = 1)
    assert torch.allclose(grvr_weights(source, src_grid, rois, target, 0.7, 0.0).weights, torch.ones(3))
    assert grvr_weights(source, src_grid, [Box("x", 100, 100, 120, 120)], target, 0.7, 1.0) is None


def test_grvr_hook_scales_current_rows_exactly_and_ones_change_nothing(adapter, frames):
    hist = (HistoryEntry(images=(frames["ok"][1],), text=SNIPPET, source="lvlm"),)
    roi = (Box("car", 30, 30, 80, 60),)
    req = Request(id="r", images=(frames["ok"][0],), query="q", history=hist)
    prep = adapter.prepare([req])
    captured = {}
    base = adapter.base

    def features(plan):
        out = {}
        orig = type(base).get_image_features

        def spy(self, *a, **k):
            res = orig(self, *a, **k)
            out["raw"] = [t.clone() for t in res.pooler_output]
            return res

        type(base).get_image_features = spy
        try:
            from edgevlm_eval.model_adapters.focus import focus_hook

            with torch.inference_mode(), focus_hook(base, plan):
                got = base.get_image_features(prep.model_inputs["pixel_values"], prep.model_inputs["image_grid_thw"])
        finally:
            type(base).get_image_features = orig
        return out["raw"], got.pooler_output

    # weights from the plan: alpha = 1 gives weights of exactly one -> features unchanged, bit for bit
    plan1 = FocusPlan(images={1: ImageFocus(reweight_from=0, reweight_rois=roi, alpha=1.0, mu=1.0)},
                      grids=prep.plan.grids)
    raw, got = features(plan1)
    assert torch.equal(got[1], raw[1]) and torch.equal(got[0], raw[0])
    plan2 = FocusPlan(images={1: ImageFocus(reweight_from=0, reweight_rois=roi, alpha=0.7, mu=1.0)},
                      grids=prep.plan.grids)
    raw, got = features(plan2)
    w = plan2.grvr[1].weights
    assert not torch.allclose(w, torch.ones_like(w))
    assert torch.equal(got[1], raw[1] * w.unsqueeze(-1))
    assert torch.equal(got[0], raw[0])  # the history image is not re-weighted
    captured["w"] = w

    # End to end: alpha=1 focus gives exactly the unfocused logits; the reply reports GRVR.
    plain = forward_logits(adapter, prep.model_inputs, None)
    ones = forward_logits(adapter, prep.model_inputs, plan1)
    assert torch.equal(plain, ones)
    rep = adapter.generate([Request(id="r2", images=req.images, query="q", history=hist,
                                    focus=Focus(reweight_source=0, reweight_rois=roi, alpha=0.7, mu=1.0))])[0]
    g = rep.focus_applied["grvr"]
    assert g["source"] == 0 and g["categories"] == ["car"] and g["alpha"] == 0.7
    assert g["weight_min"] == pytest.approx(float(captured["w"].min()), abs=1e-6)
    assert rep.visual_tokens_kept == rep.visual_tokens  # GRVR drops nothing


def test_placeholder_tokens_in_text_are_not_taken_for_images(adapter, frames):
    req = Request(id="p", images=(frames["ok"][0],), query="what is <|image_pad|> here?")
    rep = adapter.generate([req])[0]
    assert rep.ok and rep.visual_tokens == 64


def test_focus_on_missing_entry_is_reported_not_applied(adapter, frames):
    req = Request(id="m", images=(frames["ok"][0],), query="q",
                  focus=Focus(prune={3: (Box("car", 0, 0, 50, 50),)}, reweight_source=2,
                              reweight_rois=(Box("car", 0, 0, 50, 50),)))
    rep = adapter.generate([req])[0]
    assert rep.ok and rep.focus_applied == {} and rep.visual_tokens_kept == rep.visual_tokens
    assert set(adapter.prepare([req]).rows[0].focus_skipped) == {"ggvr[3]", "grvr"}


def test_grounding_request_maps_boxes_to_original_pixels(frames):
    """A stub model output in Qwen's format, parsed with this adapter's resized grid."""
    a = QwenVLAdapter("tiny", max_pixels=28 * 28 * 64, max_new_tokens=4)
    req = Request(id="gr", images=(frames["ok"][1],), query="q", grounding=True)
    prep = a.prepare([req])
    row = prep.rows[0]
    assert row.grids[0].resized == (252, 168)
    from edgevlm_eval.core.types import Reply

    rep = Reply(text='<answer>car</answer>```json\n[{"bbox_2d": [25.2, 16.8, 126, 84], "label": "car"}]\n```')
    a._ground(rep, row)
    assert rep.text == "car"
    (b,) = rep.rois
    assert (b.x1, b.y1, b.x2, b.y2) == pytest.approx((30, 20, 150, 100))
    # The grounding instruction is in the prompt.
    assert "bbox_2d" in a.tokenizer.decode(row.ids)


def test_image_cache_gives_identical_replies_and_sees_file_changes(adapter, frames, tmp_path, monkeypatch):
    import shutil

    from edgevlm_eval.model_adapters import qwen2_5_vl as q

    cached = QwenVLAdapter("tiny", max_pixels=28 * 28 * 64, max_new_tokens=6, image_cache_mb=64)
    reqs = _requests(frames["ok"], 3)
    first = cached.generate(reqs)
    assert [r.text for r in first] == [r.text for r in adapter.generate(reqs)]
    decodes = []
    real_load = q.load_image

    def counting_load(path):
        decodes.append(path)
        return real_load(path)

    monkeypatch.setattr(q, "load_image", counting_load)
    again = cached.generate(reqs)
    assert [r.text for r in again] == [r.text for r in first] and decodes == []  # all from the cache
    # A rewritten file (new mtime/size) is read again; a deleted one is a missing image, not a stale hit.
    f = tmp_path / "x.png"
    shutil.copy(frames["ok"][0], f)
    cached.max_new_tokens = 1
    r1 = cached.generate([Request(id="a", images=(str(f),), query="q")])[0]
    shutil.copy(frames["ok"][2], f)
    r2 = cached.generate([Request(id="b", images=(str(f),), query="q")])[0]
    assert (r1.visual_tokens, r2.visual_tokens) == (64, 55) and decodes == [str(f), str(f)]
    f.unlink()
    r3 = cached.generate([Request(id="c", images=(str(f),), query="q")])[0]
    assert not r3.ok and "missing image" in r3.error


def test_lru_bytes_bound():
    from edgevlm_eval.model_adapters.qwen2_5_vl import _LRUBytes

    c = _LRUBytes(100)
    c.put("a", 1, 60)
    c.put("b", 2, 30)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3, 30)  # 120 > 100: the least recent (b) goes
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3 and c.used == 90
    c.put("huge", 4, 101)  # larger than the whole cache: not kept
    assert c.get("huge") is None and c.used == 90
