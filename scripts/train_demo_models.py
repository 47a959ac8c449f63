"""Train the demo world's two tiny Qwen2.5-VL checkpoints: `demo-svlm` (weak) and `demo-lvlm` (strong).

    OMP_NUM_THREADS=1 python scripts/train_demo_models.py   # both, into model_adapters/checkpoints/ (~35 min)
    python scripts/train_demo_models.py --only svlm --steps 200 --out /tmp/ck   # a quick try

Both are the real `Qwen2_5_VLForConditionalGeneration` with small configs, a byte-level BPE
tokenizer trained here (label names and numbers are always their own pieces, so history
snippets and answers name a class with the same tokens everywhere; the task's long fixed
prompt texts merge into a few tokens) and the real `Qwen2VLImageProcessorPil`. They are saved as
ordinary checkpoint folders (fp16 safetensors + tokenizer + preprocessor config) and load through
`QwenVLAdapter` like any Qwen2.5-VL checkpoint.

Every training input is built by the adapter's own `prepare()` from `Request`s, so the models see
at evaluation time exactly the prompt (chat format, image token counts, M-RoPE positions) they
were trained on:
- demo-lvlm: full pixel budget (a 448x252 frame = 144 visual tokens), no history; asked plainly
  (answer: the comma list) or with the grounding prompt (answer: `<answer>...</answer>` and a
  Qwen2.5-VL-style ```json [{"label": ..., "bbox_2d": [x1, y1, x2, y2]}]``` list, one box per
  class: the largest, in pixels of the resized image, snapped outward to the 28-pixel token grid).
- demo-lvlm is trained in two stages (vision tower alone, then everything) with an auxiliary
  vision loss (VisionProbe) and an auxiliary position loss (PositionProbe); label answers only
  for the first 40 % of its steps.
- demo-svlm: fewer parameters, a quarter of the pixels (max_pixels below: 224x112, 32 visual
  tokens a frame, so specks of a few pixels are mostly lost in the downscale) and one stage with
  no auxiliary loss, so it leans on the label prior, large objects and history. Trained with 0-2 history
  entries of either kind (CRM snippets in the task's wording, or native turns) whose labels are
  right (ground truth of the earlier frame, what the cloud would say) or SVLM-like (small objects
  dropped, the odd false positive), so it learns that a history mention raises the odds of a
  class it can barely see, without copying blindly.

Training data is drawn on the fly from the demo world with seeds >= 1000 (the demo task
evaluates seed 0). Everything is seeded: the same command writes the same checkpoints (on the
same torch build and thread count).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgevlm_eval.core.grounding import grounding_prompt, qwen_resized_size
from edgevlm_eval.core.metrics import Scored, compute
from edgevlm_eval.model_adapters.focus import TokenGrid, focus_hook
from edgevlm_eval.model_adapters.prompt import DEFAULT_SYSTEM, build_conversation, qwen_chat_text
from edgevlm_eval.model_adapters.qwen2_5_vl import IMAGE_TOKEN, QwenVLAdapter
from edgevlm_eval.model_adapters.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS, tiny_config
from edgevlm_eval.tasks import load_task
from edgevlm_eval.tasks.demo import CLASSES, generate_world, render
from edgevlm_eval.core.grounding import QWEN_MIN_PIXELS
from edgevlm_eval.core.types import Focus, HistoryEntry, Request, largest_per_label

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "model_adapters" / "checkpoints"

TRAIN_SEED = 1000  # demo worlds for training: seeds TRAIN_SEED.. (evaluation: the task's seed 0)
MIN_PIXELS = QWEN_MIN_PIXELS
LVLM_MAX_PIXELS = 448 * 252  # the whole 448x252 frame: 16x9 = 144 visual tokens
SVLM_MAX_PIXELS = 224 * 140  # a 448x252 frame becomes 224x112 (8x4 = 32 tokens): specks vanish
NONE = "none"  # what the task's query asks for when nothing is present


@dataclass(frozen=True)
class ModelSize:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vision_hidden: int
    vision_depth: int


SIZES = {
    "svlm": ModelSize(hidden=96, layers=2, heads=4, kv_heads=2, vision_hidden=48, vision_depth=2),
    "lvlm": ModelSize(hidden=160, layers=3, heads=4, kv_heads=2, vision_hidden=96, vision_depth=3),
}


# ------------------------------------------------------------------------------------ tokenizer

def _piece_pattern() -> str:
    """Label names and numbers are isolated pre-tokens (same tokens wherever they appear); the
    text between them is one pre-token, so fixed phrases merge into long tokens."""
    names = sorted(CLASSES, key=len, reverse=True)
    return r" ?(?:" + "|".join(re.escape(n) for n in names) + r")\b| ?\d+"


_SPECIAL_SPLIT = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def train_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_piece_pattern()), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  max_token_length=64)
    texts = [p for t in corpus for p in _SPECIAL_SPLIT.split(t) if p]
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


# ------------------------------------------------------------------------------------ data

class FramePool:
    """Training frames from demo worlds (seeds >= TRAIN_SEED), rendered to PNG on first use (the
    adapter reads images from paths, as in evaluation), with each frame's per-cell class map for
    the auxiliary vision loss."""

    def __init__(self, work: Path, n_worlds: int, streams_per_world: int = 8, frames: int = 20,
                 grids: tuple[tuple[int, int], ...] = ()):
        self.work = work
        self.grids = grids
        self.streams = []
        for w in range(n_worlds):
            self.streams.extend(generate_world(seed=TRAIN_SEED + w, n_streams=streams_per_world,
                                               frames_per_stream=frames))
        self._paths: dict[tuple[int, int], str] = {}
        self.cells: dict[str, dict[tuple[int, int], torch.Tensor]] = {}  # path -> grid -> [cells, classes]

    def path(self, s: int, k: int) -> str:
        key = (s, k)
        p = self._paths.get(key)
        if p is None:
            p = str(self.work / f"{s:05d}_{k:03d}.png")
            frame = self.streams[s].frames[k]
            img, mask = render(frame, with_mask=True)
            img.save(p, format="PNG")
            self.cells[p] = {g: cell_targets(frame, mask, g) for g in self.grids}
            self._paths[key] = p
        return p


def cell_targets(frame, mask: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """[gh * gw, classes] 0/1: which ground-truth classes paint pixels in each merged-token cell
    (row-major, the order of the vision tower's merged tokens)."""
    gh, gw = grid
    h, w = mask.shape
    out = np.zeros((gh * gw, len(CLASSES)), dtype=np.float32)
    col = {c: i for i, c in enumerate(CLASSES)}
    for k, o in enumerate(frame.objects):
        if not o.visible:
            continue
        ys, xs = np.nonzero(mask == k + 1)
        cells = np.unique((ys * gh // h) * gw + xs * gw // w)
        out[cells, col[o.label]] = 1.0
    return torch.from_numpy(out)


def render_labels(labels) -> str:
    return ", ".join(labels) if labels else NONE


def grounding_answer(frame, resized: tuple[int, int]) -> str:
    """`<answer>labels</answer>` then one box per class (its largest), Qwen2.5-VL style, in pixels
    of the resized image, in class order, snapped outward to the 28-pixel token grid (a box on the
    token grid selects the same visual tokens for GGVR/GRVR as the exact box, and is far easier for
    a tiny model to say: 16 x positions instead of 448)."""
    # the cells a box covers are the ones Visual Focus selects for it (TokenGrid, model_adapters/focus.py)
    grid = TokenGrid(orig_w=frame.camera.width, orig_h=frame.camera.height, grid_h=resized[1] // 28,
                     grid_w=resized[0] // 28)
    sx, sy = resized[0] / frame.camera.width, resized[1] / frame.camera.height
    best = {b.label: b for b in largest_per_label(frame.boxes)}
    items = []
    for c in CLASSES:
        b = best.get(c)
        if b is None:
            continue
        cols = grid.cell_range(b.x1, b.x2, sx, grid.grid_w)
        rows = grid.cell_range(b.y1, b.y2, sy, grid.grid_h)
        xy = [cols.start * grid.cell, rows.start * grid.cell, cols.stop * grid.cell, rows.stop * grid.cell]
        # label first (valid JSON either way): the class the box is for is then already said
        # when the coordinates are, and the model looks for that class's tokens to place them
        items.append('{"label": "%s", "bbox_2d": [%d, %d, %d, %d]}' % (c, *xy))
    return f"<answer>{render_labels(frame.labels)}</answer>\n```json\n[" + ", ".join(items) + "]\n```"


def svlm_like(frame, rng: random.Random) -> tuple[str, ...]:
    """What a weak model might have answered for `frame`: classes whose biggest object is small are
    often dropped, and now and then a class is made up."""
    biggest: dict[str, int] = {}
    for o in frame.visible_objects:
        biggest[o.label] = max(biggest.get(o.label, 0), o.pixels)
    keep = set()
    for c, px in biggest.items():
        p_keep = 0.15 if px < 20 else 0.5 if px < 60 else 0.95
        if rng.random() < p_keep:
            keep.add(c)
    if rng.random() < 0.15:
        keep.add(rng.choice(CLASSES))
    return tuple(c for c in CLASSES if c in keep)


def perturb(labels: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
    """A slightly wrong 'cloud' answer: rarely one class dropped or one added."""
    s = set(labels)
    if s and rng.random() < 0.1:
        s.discard(rng.choice(sorted(s)))
    if rng.random() < 0.05:
        s.add(rng.choice(CLASSES))
    return tuple(c for c in CLASSES if c in s)


class Sampler:
    def __init__(self, pool: FramePool, task, rng: random.Random, ground_frac: float = 0.7,
                 prune_frac: float = 0.0):
        self.pool, self.task, self.rng = pool, task, rng
        self.ground_frac = ground_frac
        self.prune_frac = prune_frac  # share of cloud snippets whose image comes GGVR-pruned to its ROIs

    def _frame(self, min_k: int = 0):
        s = self.rng.randrange(len(self.pool.streams))
        k = self.rng.randrange(min_k, len(self.pool.streams[s].frames))
        return s, k

    def lvlm(self, i: int, resized: tuple[int, int]) -> tuple[Request, str]:
        s, k = self._frame()
        f = self.pool.streams[s].frames[k]
        ground = self.rng.random() < self.ground_frac  # the trace asks for boxes; plain asks: the labels
        req = Request(id=f"l{i}", images=(self.pool.path(s, k),), query=self.task.query, grounding=ground)
        ans = grounding_answer(f, resized) if ground else render_labels(f.labels)
        return req, ans

    def svlm(self, i: int) -> tuple[Request, str]:
        rng = self.rng
        s, k = self._frame(min_k=2)
        frames = self.pool.streams[s].frames
        f = frames[k]
        n_hist = rng.choices([0, 1, 2], weights=[0.25, 0.3, 0.45])[0]
        crm = rng.random() < 0.6
        history = []
        prune: dict[int, tuple] = {}
        if n_hist:
            # CRM: the cloud (correct) entry is the farthest, up to ~10 s old; others are recent
            # own answers. Native turns: the final outputs of the last frames, of either kind.
            picks: list[tuple[int, str]] = []
            if crm and rng.random() < 0.7:
                far = max(0, k - rng.randint(1, min(10, k)))
                picks.append((far, "lvlm"))
            near = k - 1
            while len(picks) < n_hist and near >= 0:
                if all(j != near for j, _ in picks):
                    picks.append((near, "lvlm" if (not crm and rng.random() < 0.4) else "svlm"))
                near -= 1
            picks.sort()
            for j, src in picks:
                prev = frames[j]
                if src == "lvlm":
                    labels = perturb(prev.labels, rng)
                elif rng.random() < 0.3:
                    labels = perturb(prev.labels, rng)  # an own answer that happened to be right
                else:
                    labels = svlm_like(prev, rng)
                age = float(k - j) + (rng.uniform(0.0, 0.4) if crm else 0.0)
                path = self.pool.path(s, j)
                if crm:
                    # As in an edgeVLM run with GGVR: the cloud entry's image is kept only where its
                    # boxes are (the boxes of the classes it names), so the model learns to read a
                    # pruned history image too.
                    if src == "lvlm" and self.prune_frac and rng.random() < self.prune_frac:
                        rois = tuple(b for b in largest_per_label(prev.boxes) if b.label in labels)
                        if rois:
                            prune[len(history)] = rois
                    history.append(HistoryEntry(images=(path,), text=self.task.history_snippet(age, labels),
                                                kind="snippet", frame_index=j, source=src, age_s=age))
                else:
                    history.append(HistoryEntry(images=(path,), kind="turn", query=self.task.query,
                                                text=self.task.label_space.render(labels, self.task.empty_answer),
                                                frame_index=j, source=src, age_s=age))
        req = Request(id=f"s{i}", images=(self.pool.path(s, k),), query=self.task.query, history=tuple(history),
                      focus=Focus(prune=prune) if prune else None)
        return req, render_labels(f.labels)


def corpus_for_tokenizer(pool: FramePool, task, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    sampler = Sampler(pool, task, rng)
    resized = qwen_resized_size(448, 252, MIN_PIXELS, LVLM_MAX_PIXELS)
    texts = []
    for i in range(n):
        req, ans = sampler.lvlm(i, resized) if i % 2 else sampler.svlm(i)
        q = grounding_prompt(req.query) if req.grounding else None
        texts.append(qwen_chat_text(build_conversation(req, system=DEFAULT_SYSTEM, query=q), IMAGE_TOKEN) + ans
                     + "<|im_end|>")
    # every coordinate value, with and without a leading space (x1 follows "["), so each one is a
    # single token
    numbers = [str(v) for v in range(0, 449)]
    texts.extend([", ".join(numbers), "[" + "[".join(numbers)] * 10)
    return texts


# ------------------------------------------------------------------------------------ batches

def make_batch(adapter: QwenVLAdapter, pairs: list[tuple[Request, str]], pool: FramePool) -> dict:
    """Inputs + labels for a batch: the adapter's own prompt (prepare) then the answer and
    <|im_end|>, right-padded; only answer tokens carry a loss. `cells`: the per-cell class targets
    of every image, in the order of the vision tower's merged tokens."""
    prep = adapter.prepare([r for r, _ in pairs], apply_prune=True)  # GGVR where a request asks for it
    if prep.invalid:
        raise RuntimeError(f"unreadable training images: {prep.invalid}")
    tok = adapter.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    seqs = []
    for row, (_, ans) in zip(prep.rows, pairs):
        a = torch.tensor(tok.encode(ans, add_special_tokens=False) + [end], dtype=torch.long)
        nxt = int(row.positions.max()) + 1
        pos = torch.cat([row.positions, (nxt + torch.arange(len(a))).view(1, -1).expand(3, -1)], dim=1)
        seqs.append((torch.cat([row.ids, a]), torch.cat([row.types, torch.zeros_like(a)]), pos, len(row.ids)))
    L = max(len(s[0]) for s in seqs)
    B = len(seqs)
    ids = torch.full((B, L), adapter.pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    types = torch.zeros((B, L), dtype=torch.long)
    position = torch.zeros((4, B, L), dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for b, (x, t, p, n_prompt) in enumerate(seqs):
        n = len(x)
        ids[b, :n], mask[b, :n], types[b, :n] = x, 1, t
        position[1:, b, :n] = p
        position[0, b, :n] = torch.arange(n)
        labels[b, n_prompt:n] = x[n_prompt:]
    thw = prep.model_inputs["image_grid_thw"]
    grid = (int(thw[0][1]) // adapter.merge, int(thw[0][2]) // adapter.merge)
    paths = [p for r, _ in pairs for p in [*(q for e in r.history for q in e.images), *r.images]]
    cells = torch.cat([pool.cells[p][grid] for p in paths])
    return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types, "position_ids": position,
            "pixel_values": prep.model_inputs["pixel_values"], "image_grid_thw": thw,
            "labels": labels, "cells": cells, "images": paths, "grid": grid, "plan": prep.plan}


class VisionProbe:
    """Auxiliary loss on the vision tower's merged tokens (training only, nothing extra is saved):
    read through the language model's own final norm and output embeddings of the class-name
    tokens, each token must tell which classes paint pixels in its cell, and the image's tokens
    (max-pooled) which classes are in the image. A from-scratch tiny VLM otherwise learns the
    label prior first and takes very long to look at the image; with the probe tied to the
    output embeddings, visual tokens carry "this is a truck" in the very direction the language
    model must produce, and attending to them is enough."""

    def __init__(self, model, tokenizer):
        lm = model.model.language_model
        self.norm, self.lm_head = lm.norm, model.lm_head
        ids = []
        for variant in ("%s", " %s"):  # the first label of an answer has no leading space
            row = []
            for c in CLASSES:
                t = tokenizer.encode(variant % c, add_special_tokens=False)
                if len(t) != 1:
                    raise AssertionError(f"class name {variant % c!r} is not one token: {t}")
                row.append(t[0])
            ids.append(row)
        self.ids = torch.tensor(ids)  # [2, classes]
        self.tokens = None
        model.model.visual.register_forward_hook(self._grab)

    def parameters(self):
        return []

    def _grab(self, module, args, output):
        self.tokens = output.pooler_output  # [merged tokens, hidden], row-major per image

    def loss(self, cells: torch.Tensor, images: list[str]) -> torch.Tensor:
        w = self.lm_head.weight[self.ids].mean(0)  # [classes, hidden]
        logits = self.norm(self.tokens.float()) @ w.T
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        n_img = len(images)
        pooled = logits.view(n_img, -1, logits.shape[1]).amax(1)  # every image has the same grid
        present = cells.view(n_img, -1, cells.shape[1]).amax(1)
        return bce(logits, cells) + bce(pooled, present)


class PositionProbe:
    """Auxiliary loss that teaches the language model where its visual tokens are (training only:
    the small linear readout is thrown away). Rotary positions tell attention how far apart two
    tokens are, not where a token is, so a tiny model that has found "a truck" among the visual
    tokens cannot say at which x it is: its boxes land on the image's centre line. Asking the
    hidden state of every visual token after a decoder layer (the first by default) to tell its column and
    row (which causal attention over the preceding tokens can work out) puts absolute position
    into the tokens' content, where later layers can copy it into the box coordinates."""

    MAX_CELLS = 32

    def __init__(self, model, image_token_id: int, layer: int = 0):
        hidden = model.config.text_config.hidden_size
        self.head = torch.nn.Linear(hidden, 2 * self.MAX_CELLS)
        self.image_token_id = image_token_id
        self.hidden = None
        model.model.language_model.layers[layer].register_forward_hook(self._grab)

    def parameters(self):
        return list(self.head.parameters())

    def _grab(self, module, args, output):
        self.hidden = output[0] if isinstance(output, tuple) else output

    def loss(self, input_ids: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        gh, gw = grid
        h = self.hidden[input_ids == self.image_token_id]  # [visual tokens, hidden], batch-major
        n_img = h.shape[0] // (gh * gw)
        idx = torch.arange(gh * gw).repeat(n_img)
        logits = self.head(h.float())
        ce = torch.nn.functional.cross_entropy
        m = self.MAX_CELLS
        return ce(logits[:, :m], idx % gw) + ce(logits[:, m:], idx // gw)


def loss_of(model, batch: dict, probe: VisionProbe | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "cells", "images", "grid", "plan")}
    with focus_hook(model.model, batch["plan"]):  # drops the pruned images' tokens, as in evaluation
        logits = model(**inputs).logits
    # token n is predicted from position n - 1
    lm = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                           ignore_index=-100)
    aux = probe.loss(batch["cells"], batch["images"]) if probe is not None else torch.zeros(())
    return lm, aux


# ------------------------------------------------------------------------------------ train / save / eval

def build_model(kind: str, tokenizer, seed: int):
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    z = SIZES[kind]
    config = tiny_config(tokenizer, hidden=z.hidden, layers=z.layers, heads=z.heads, kv_heads=z.kv_heads,
                         vision_hidden=z.vision_hidden, vision_depth=z.vision_depth)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    max_px = LVLM_MAX_PIXELS if kind == "lvlm" else SVLM_MAX_PIXELS
    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": MIN_PIXELS, "longest_edge": max_px})
    return model, ip, max_px


def pretrain_vision(model, adapter: QwenVLAdapter, probe: VisionProbe, sampler: Sampler, kind: str,
                    resized: tuple[int, int], steps: int, batch: int, pool: FramePool, lr: float = 1e-3,
                    log_every: int = 50) -> None:
    """Stage 1: the vision tower alone (with the probe's readout) learns to say which classes are
    in each cell. Started from random weights, the language model otherwise sees visual tokens
    that carry no usable signal yet, settles on the label prior, and stays blind."""
    from edgevlm_eval.core.images import load_image

    params = list(model.model.visual.parameters()) + [model.lm_head.weight]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    t0 = time.perf_counter()
    run = None
    for step in range(steps):
        pairs = [sampler.lvlm(j, resized) if kind == "lvlm" else sampler.svlm(j) for j in range(batch)]
        paths = [p for r, _ in pairs for p in [*(q for e in r.history for q in e.images), *r.images]]
        px = adapter._process_images([load_image(p) for p in paths])
        thw = px["image_grid_thw"]
        grid = (int(thw[0][1]) // adapter.merge, int(thw[0][2]) // adapter.merge)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50)
        model.model.visual(px["pixel_values"], grid_thw=thw)
        loss = probe.loss(torch.cat([pool.cells[p][grid] for p in paths]), paths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run = loss.item() if run is None else 0.95 * run + 0.05 * loss.item()
        if (step + 1) % log_every == 0 or step == steps - 1:
            print(f"[{kind}] vision step {step + 1}/{steps} aux {run:.4f} {time.perf_counter() - t0:.0f}s", flush=True)


def train_one(kind: str, tokenizer, pool: FramePool, task, steps: int, batch: int, lr: float, seed: int,
              aux_weight: float = 1.0, vision_lr_scale: float = 1 / 3, vision_steps: int = 0,
              plain_frac: float = 0.4, pos_aux: float = 0.0, pos_layer: int = 0, prune_frac: float = 0.0,
              log_every: int = 25) -> tuple:
    model, ip, max_px = build_model(kind, tokenizer, seed)
    n_params = sum(p.numel() for p in model.parameters())
    adapter = QwenVLAdapter(f"demo-{kind}", name=f"demo-{kind}", model=model, tokenizer=tokenizer,
                            image_processor=ip, min_pixels=MIN_PIXELS, max_pixels=max_px)
    resized = qwen_resized_size(448, 252, MIN_PIXELS, max_px)
    rng = random.Random(seed)
    sampler = Sampler(pool, task, rng, prune_frac=prune_frac)
    probe = VisionProbe(model, tokenizer)
    pos_probe = PositionProbe(model, adapter.image_token_id, pos_layer) if pos_aux else None
    if vision_steps:
        pretrain_vision(model, adapter, probe, sampler, kind, resized, vision_steps, batch, pool)
    # The from-scratch vision tower trains best at a third of the language model's rate.
    vision = list(model.model.visual.parameters())
    vision_ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in vision_ids] + list(probe.parameters())
    if pos_probe is not None:
        rest += pos_probe.parameters()
    params = vision + rest
    opt = torch.optim.AdamW([{"params": vision, "scale": vision_lr_scale}, {"params": rest, "scale": 1.0}],
                            lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)

    def lr_at(step):  # linear warm-up, cosine decay to 5 %
        if step < warm:
            return lr * (step + 1) / warm
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm))))

    print(f"[{kind}] {n_params / 1e6:.2f} M parameters, resized frame {resized}, {steps} steps x {batch}",
          flush=True)
    model.train()
    t0 = time.perf_counter()
    run = None
    for step in range(steps):
        # Curriculum: label answers only at first (the loss is all about what is in the image),
        # then the grounding replies too.
        sampler.ground_frac = 0.0 if step < plain_frac * steps else 0.7
        pairs = [sampler.lvlm(step * batch + j, resized) if kind == "lvlm" else sampler.svlm(step * batch + j)
                 for j in range(batch)]
        b = make_batch(adapter, pairs, pool)
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * g["scale"]
        lm, aux = loss_of(model, b, probe)
        loss = lm + aux_weight * aux
        if pos_probe is not None:
            pos = pos_probe.loss(b["input_ids"], b["grid"])
            loss = loss + pos_aux * pos
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        cur = torch.tensor([lm.item(), aux.item(), pos.item() if pos_probe is not None else 0.0])
        run = cur if run is None else 0.95 * run + 0.05 * cur
        if (step + 1) % log_every == 0 or step == steps - 1:
            print(f"[{kind}] step {step + 1}/{steps} loss {run[0]:.4f} aux {run[1]:.4f} pos {run[2]:.3f} "
                  f"lr {lr_at(step):.2e} "
                  f"{time.perf_counter() - t0:.0f}s", flush=True)
    model.eval()
    return model, ip, max_px, time.perf_counter() - t0


def save_checkpoint(path: Path, kind: str, model, tokenizer, ip, max_px: int, info: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*"):
        if old.is_file():
            old.unlink()
    model.to(torch.float16).save_pretrained(path)
    model.to(torch.float32)
    tokenizer.save_pretrained(path)
    ip.save_pretrained(path)
    pp = path / "preprocessor_config.json"
    cfg = json.loads(pp.read_text())
    cfg.update({"min_pixels": MIN_PIXELS, "max_pixels": max_px})
    pp.write_text(json.dumps(cfg, indent=2) + "\n")
    (path / "TRAINING.json").write_text(json.dumps(info, indent=2) + "\n")


def load_demo_adapter(path: Path | str, kind: str, **opts) -> QwenVLAdapter:
    """A saved demo checkpoint through the Qwen adapter, with the options its registry entry
    would give (float32 on CPU, its pixel budget, room for the grounding reply)."""
    max_px = LVLM_MAX_PIXELS if kind == "lvlm" else SVLM_MAX_PIXELS
    base = dict(name=f"demo-{kind}", dtype="float32", min_pixels=MIN_PIXELS, max_pixels=max_px,
                max_new_tokens=192 if kind == "lvlm" else 32, batch_size=8)
    return QwenVLAdapter(str(path), **{**base, **opts})


def evaluate(adapter: QwenVLAdapter, task, work: Path, seed: int = 0, n_streams: int = 4, frames: int = 10,
             mode: str = "plain") -> dict:
    """Micro-F1 on a seeded demo world. mode: plain (no history) | grounding | history (two CRM
    snippets with the ground truth of frames t-2 and t-1, as a perfect cloud would give) |
    history_pruned (the same, the farther snippet's image GGVR-pruned to its true boxes)."""
    world = generate_world(seed=seed, n_streams=n_streams, frames_per_stream=frames)
    reqs, truth = [], []
    for s, st in enumerate(world):
        paths = []
        for f in st.frames:
            p = work / f"eval{seed}_{s:03d}_{f.index:03d}.png"
            if not p.exists():
                render(f).save(p, format="PNG")
            paths.append(str(p))
        for k, f in enumerate(st.frames):
            hist = ()
            focus = None
            if mode in ("history", "history_pruned"):
                hist = tuple(HistoryEntry(images=(paths[j],), text=task.history_snippet(k - j, st.frames[j].labels),
                                          kind="snippet", frame_index=j, source="lvlm", age_s=float(k - j))
                             for j in (k - 2, k - 1) if j >= 0)
                if mode == "history_pruned" and hist:  # GGVR on the farther entry, with its true boxes
                    rois = largest_per_label(st.frames[hist[0].frame_index].boxes)
                    focus = Focus(prune={0: rois}) if rois else None
            reqs.append(Request(id=f"{s}-{k}", images=(paths[k],), query=task.query, history=hist,
                                grounding=mode == "grounding", focus=focus))
            truth.append(f.labels)
    t0 = time.perf_counter()
    replies = adapter.generate(reqs)
    dt = time.perf_counter() - t0
    items = [Scored(t, task.label_space.parse(r.text).labels if r.ok else None) for t, r in zip(truth, replies)]
    f1 = compute(items, task.label_space, ["micro_f1"])["micro_f1"]
    out = {"mode": mode, "frames": len(reqs), "micro_f1": round(f1, 4),
           "invalid": sum(not r.ok for r in replies), "seconds": round(dt, 1)}
    if mode == "grounding":
        out["boxes_per_frame"] = round(sum(len(r.rois) for r in replies) / len(replies), 2)
    return out


def command_line(argv: list[str]) -> str:
    """The training command as run, without the output folder (a machine path)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            out.append(a)
    return " ".join(["python scripts/train_demo_models.py", *out])


def main(argv=None) -> int:
    global SVLM_MAX_PIXELS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder receiving demo-svlm/ and demo-lvlm/")
    ap.add_argument("--only", choices=["svlm", "lvlm"], default=None)
    ap.add_argument("--steps", type=int, default=None, help="override both models' step counts")
    ap.add_argument("--svlm-steps", type=int, default=1000)
    ap.add_argument("--lvlm-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: leaves a core free)")
    ap.add_argument("--worlds", type=int, default=60, help="training demo worlds (8 streams x 20 frames each)")
    ap.add_argument("--vocab", type=int, default=1600)
    ap.add_argument("--aux", type=float, default=1.0, help="weight of the auxiliary vision loss (VisionProbe)")
    ap.add_argument("--vision-steps", type=int, default=800, help="stage 1: vision tower + probe only")
    ap.add_argument("--plain-frac", type=float, default=0.4, help="share of LVLM steps with label answers only")
    ap.add_argument("--svlm-max-pixels", type=int, default=SVLM_MAX_PIXELS, help="the SVLM's pixel budget")
    ap.add_argument("--svlm-aux", type=float, default=0.0, help="the SVLM's auxiliary vision loss weight")
    ap.add_argument("--svlm-vision-steps", type=int, default=0, help="the SVLM's stage 1 steps")
    ap.add_argument("--pos-aux", type=float, default=0.3,
                    help="the LVLM's position loss weight (PositionProbe; its boxes need it)")
    ap.add_argument("--pos-layer", type=int, default=0, help="decoder layer whose output the PositionProbe reads")
    ap.add_argument("--svlm-prune-frac", type=float, default=0.5,
                    help="share of the SVLM's cloud history snippets whose image is GGVR-pruned to its boxes")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    SVLM_MAX_PIXELS = args.svlm_max_pixels

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    task = load_task("demo")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="demo-train-") as tmp:
        work = Path(tmp)
        grids = tuple((h // 28, w // 28) for w, h in (qwen_resized_size(448, 252, MIN_PIXELS, px)
                                                       for px in (SVLM_MAX_PIXELS, LVLM_MAX_PIXELS)))
        pool = FramePool(work, args.worlds, grids=grids)
        tokenizer = train_tokenizer(corpus_for_tokenizer(pool, task, 3000, args.seed), args.vocab)
        print(f"tokenizer: {len(tokenizer)} tokens; query = {len(tokenizer.encode(task.query))} tokens", flush=True)
        kinds = [args.only] if args.only else ["svlm", "lvlm"]
        # The SVLM is weak on purpose: besides its smaller size and pixel budget it gets no help
        # learning to see (no vision pre-training, no auxiliary vision loss), so it leans on the
        # label prior, large objects and its history.
        aux = {"svlm": args.svlm_aux, "lvlm": args.aux}
        vision_steps = {"svlm": args.svlm_vision_steps, "lvlm": args.vision_steps}
        for kind in kinds:
            steps = args.steps or (args.svlm_steps if kind == "svlm" else args.lvlm_steps)
            model, ip, max_px, secs = train_one(kind, tokenizer, pool, task, steps, args.batch, args.lr,
                                                args.seed + (1 if kind == "lvlm" else 0), aux[kind],
                                                vision_steps=vision_steps[kind], plain_frac=args.plain_frac,
                                                pos_aux=args.pos_aux if kind == "lvlm" else 0.0,
                                                pos_layer=args.pos_layer,
                                                prune_frac=args.svlm_prune_frac if kind == "svlm" else 0.0)
            info = {"model": f"demo-{kind}", "size": SIZES[kind].__dict__, "steps": steps, "batch": args.batch,
                    "lr": args.lr, "aux": aux[kind], "vision_steps": vision_steps[kind],
                    "plain_frac": args.plain_frac, "pos_aux": args.pos_aux if kind == "lvlm" else 0.0,
                    "pos_layer": args.pos_layer, "prune_frac": args.svlm_prune_frac if kind == "svlm" else 0.0,
                    "seed": args.seed, "threads": args.threads,
                    "train_seconds": round(secs),
                    "min_pixels": MIN_PIXELS, "max_pixels": max_px, "train_world_seeds": [TRAIN_SEED,
                                                                                          TRAIN_SEED + args.worlds - 1],
                    "command": command_line(argv if argv is not None else sys.argv[1:])}
            path = args.out / f"demo-{kind}"
            save_checkpoint(path, kind, model, tokenizer, ip, max_px, info)
            print(f"[{kind}] saved {path} ({sum(f.stat().st_size for f in path.iterdir()) / 1e6:.1f} MB, "
                  f"{secs:.0f} s training)", flush=True)
            if not args.no_eval:
                adapter = load_demo_adapter(path, kind)
                modes = ["plain", "grounding"] if kind == "lvlm" else ["plain", "history", "history_pruned"]
                for m in modes:
                    print(f"[{kind}] eval seed 0: {evaluate(adapter, task, work, mode=m)}", flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
