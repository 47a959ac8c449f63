"""Qwen2.5-VL family adapter (Qwen2.5-VL 3B/7B/72B, VLM-R1 fine-tunes, the tiny test model).

One `generate()` call runs its requests as left-padded batches through transformers' `generate`:
- the prompt is written out in Qwen's chat format (prompt.py) and tokenised here, each image's
  `<|image_pad|>` repeated once per merged visual token, so the adapter knows where every image's
  tokens sit in the sequence;
- images are resized by the real `Qwen2VLImageProcessorPil` under the entry's pixel budget;
- M-RoPE positions are always computed here, per request, by the model's own `get_rope_index` on
  the UNPRUNED prompt and passed as explicit `position_ids` (4 rows: text positions for the
  attention mask, then t/h/w). GGVR then removes the dropped tokens' columns, so the kept tokens
  keep the positions of the full image (checked on transformers 5.x: recomputing on the pruned prompt
  fails or is silently wrong);
- Visual Focus acts on the merged tokens after the vision tower through a temporary wrapper of
  `get_image_features` (focus.py);
- greedy decoding by default; the top-1 probability of each generated token comes from the raw
  logits `generate` returns, and those of the answer's tokens (no <think> reasoning, no box
  coordinates; core/answer_span.py) are reported apart for LAECIPS' confidence.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from edgevlm_eval.core.answer_span import answer_token_probs, char_ends_by_decoding, is_plain
from edgevlm_eval.core.grounding import grounding_prompt, parse_grounding
from edgevlm_eval.core.images import ImageError, load_image
from edgevlm_eval.core.types import Box, Reply, Request, largest_per_label

from .base import Adapter
from .focus import FocusPlan, ImageFocus, TokenGrid, focus_hook
from .kinds import (
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    check_checkpoint_folder,
    qwen_capabilities,
)
from .prompt import DEFAULT_SYSTEM, R1_SUFFIX, build_conversation, qwen_chat_text

log = logging.getLogger(__name__)

# The files a Qwen2.5-VL checkpoint folder needs besides config.json and the weights.
CHECKPOINT_FILES = ("preprocessor_config.json", "tokenizer.json|vocab.json")
IMAGE_TOKEN = "<|vision_start|><|image_pad|><|vision_end|>"

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(value: Any):
    if value in (None, "auto"):
        return "auto"
    if isinstance(value, torch.dtype):
        return value
    try:
        return _DTYPES[str(value).lower()]
    except KeyError:
        raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {value!r}") from None


@dataclass
class _Row:
    """Book-keeping for one request of a batch."""

    index: int  # position in the generate() call's request list
    request: Request
    ids: torch.Tensor  # 1-D prompt ids after GGVR
    types: torch.Tensor  # mm_token_type_ids after GGVR
    positions: torch.Tensor  # [3, len] M-RoPE positions after GGVR
    seq_keep: torch.Tensor  # bool over the UNPRUNED prompt: which columns were kept
    full_positions: torch.Tensor  # [3, unpruned len]
    full_ids: torch.Tensor
    full_types: torch.Tensor
    image_slice: slice  # this request's images in the batch's image list
    orig_sizes: list[tuple[int, int]]
    grids: list[TokenGrid]
    current_images: list[int]  # batch image indices
    visual_tokens: int = 0
    visual_tokens_kept: int = 0
    focus_applied: dict = field(default_factory=dict)
    plan_s: float = 0.0  # time spent mapping this request's ROIs to token masks (VFM overhead)
    # Focus asked for but not applied, with the reason. Logged, not put in Reply.focus_applied, which
    # holds only what was applied (the engine reads a non-empty focus_applied as "VFM applied").
    focus_skipped: dict = field(default_factory=dict)


@dataclass
class Prepared:
    rows: list[_Row]
    invalid: dict[int, Reply]
    model_inputs: dict[str, Any]
    plan: FocusPlan
    preprocess_s: float


_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _model_lock(model) -> threading.Lock:
    """One lock per model object: the focus hook is an instance attribute, so two adapters sharing
    a model (the cached tiny model, e.g. an SVLM and a served LVLM in one process) take turns."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(model), threading.Lock())


class _LRUBytes:
    """A least-recently-used map bounded by the bytes of its values."""

    def __init__(self, capacity: int):
        from collections import OrderedDict

        self.capacity, self.used = capacity, 0
        self._d: "OrderedDict[Any, tuple[Any, int]]" = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        item = self._d.get(key)
        if item is None:
            self.misses += 1
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key, value, nbytes: int) -> None:
        if nbytes > self.capacity:
            return
        if key in self._d:
            self.used -= self._d.pop(key)[1]
        self._d[key] = (value, nbytes)
        self.used += nbytes
        while self.used > self.capacity:
            _, (_, n) = self._d.popitem(last=False)
            self.used -= n


class _FirstTokenTimer:
    """A logits processor that notes when the first token's logits exist (= prefill done)."""

    def __init__(self):
        self.t_first: float | None = None

    def __call__(self, input_ids, scores):
        if self.t_first is None:
            self.t_first = time.perf_counter()
        return scores


class QwenVLAdapter(Adapter):
    """The Qwen2.5-VL family through transformers, with Visual Focus."""

    capabilities = qwen_capabilities()

    @classmethod
    def capabilities_for(cls, options: dict):
        return qwen_capabilities(options)

    def __init__(self, checkpoint: str, *, name: str = "qwen2_5_vl", dtype: Any = "auto", device: str | None = None,
                 device_map: Any = None, min_pixels: int | None = None, max_pixels: int | None = None,
                 max_new_tokens: int = 64, batch_size: int = 8,
                 prompt_style: str = "plain", grounding_coords: str = "qwen_abs", system: str | None = DEFAULT_SYSTEM,
                 attn_implementation: str | None = None, seed: int = 0, do_sample: bool = False,
                 temperature: float | None = None, repetition_penalty: float = 1.0, image_cache_mb: float = 0,
                 model: Any = None, tokenizer: Any = None, image_processor: Any = None):
        if prompt_style not in ("plain", "r1"):
            raise ValueError(f"prompt_style must be 'plain' or 'r1', got {prompt_style!r}")
        self.name = name
        self.checkpoint = checkpoint
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size))
        self.prompt_style = prompt_style
        self.grounding_coords = grounding_coords
        self.system = system
        self.do_sample = bool(do_sample)
        self.temperature = temperature
        # 1.0 = plain greedy; the public checkpoints' generation_config suggests 1.05 (set it to get that).
        self.repetition_penalty = float(repetition_penalty)
        # Off by default: a cache makes the measured edge step cheaper than re-processing every
        # image (what the paper's per-frame timing implies); replies are identical either way.
        self._image_cache = _LRUBytes(int(image_cache_mb * 2**20)) if image_cache_mb else None
        if model is None:
            model, tokenizer, image_processor = self._load(checkpoint, dtype, device, device_map,
                                                           attn_implementation, seed)
        # The pixel budget: given, else the checkpoint's own (its preprocessor config), else the
        # public checkpoints' limits.
        size = getattr(image_processor, "size", None) or {}
        self.min_pixels = int(min_pixels or size.get("shortest_edge") or QWEN_MIN_PIXELS)
        self.max_pixels = int(max_pixels or size.get("longest_edge") or QWEN_MAX_PIXELS)
        self.options = dict(dtype=str(dtype), device=device, device_map=device_map, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels, max_new_tokens=self.max_new_tokens,
                            batch_size=self.batch_size, prompt_style=prompt_style,
                            grounding_coords=grounding_coords, do_sample=self.do_sample,
                            repetition_penalty=self.repetition_penalty, image_cache_mb=image_cache_mb)
        self.model, self.tokenizer = model, tokenizer
        self.image_processor = image_processor
        self.base = model.model  # Qwen2_5_VLModel: get_image_features, get_rope_index
        cfg = model.config
        self.image_token_id = cfg.image_token_id
        vcfg = cfg.vision_config
        self.merge = vcfg.spatial_merge_size
        self.patch = vcfg.patch_size
        self.pad_id = tokenizer.pad_token_id
        self.eos_ids = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        self.eos_ids.discard(None)

    # ---------------------------------------------------------------- loading
    @staticmethod
    def _load(checkpoint, dtype, device, device_map, attn_implementation, seed):
        if checkpoint == "tiny":
            from .tiny import build_tiny_qwen

            tiny = build_tiny_qwen(seed)
            model = tiny.model
            if parse_dtype(dtype) not in ("auto", torch.float32) or device not in (None, "cpu"):
                # The cached tiny model is shared: convert a copy.
                import copy

                model = copy.deepcopy(model)
                if parse_dtype(dtype) != "auto":
                    model = model.to(parse_dtype(dtype))
                if device:
                    model = model.to(device)
            return model, tiny.tokenizer, tiny.image_processor
        # A local folder is checked before transformers sees it (a clear error, not a traceback).
        checkpoint = check_checkpoint_folder(checkpoint, adapter="qwen2_5_vl", needs=CHECKPOINT_FILES) or checkpoint

        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        kwargs: dict[str, Any] = {"dtype": parse_dtype(dtype)}
        if device_map is not None:
            kwargs["device_map"] = device_map
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        import sys

        from transformers.utils import logging as hf_logging

        if not sys.stderr.isatty():  # a loading bar helps in a terminal, not in logs and CI output
            hf_logging.disable_progress_bar()
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint, **kwargs)
        if device_map is None and device:
            model = model.to(device)
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        # Import the PIL processor directly: AutoProcessor needs torchvision for the video part.
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(checkpoint)
        return model, tokenizer, image_processor

    def describe(self) -> dict:
        return {"name": self.name, "adapter": "qwen2_5_vl", "checkpoint": self.checkpoint,
                "options": self.options, "capabilities": self.capabilities.to_json()}

    # ---------------------------------------------------------------- prompt building
    def _query(self, req: Request) -> str:
        q = grounding_prompt(req.query, self.grounding_coords) if req.grounding else req.query
        if self.prompt_style == "r1":
            q += R1_SUFFIX
        return q

    def _encode(self, text: str, tokens_per_image: Sequence[int]) -> torch.Tensor:
        """Tokenise the chat text, each image placeholder expanded to its token count (as the
        Qwen processor does, but keeping the ids under our control)."""
        pieces = text.split("<|image_pad|>")
        if len(pieces) - 1 != len(tokens_per_image):
            raise AssertionError("image placeholders and images differ")
        ids: list[int] = []
        for k, piece in enumerate(pieces):
            if piece:
                ids.extend(self.tokenizer.encode(piece, add_special_tokens=False))
            if k < len(tokens_per_image):
                ids.extend([self.image_token_id] * tokens_per_image[k])
        return torch.tensor(ids, dtype=torch.long)

    def _process_images(self, images):
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        return self.image_processor(images=images, size=size, return_tensors="pt")

    def _pixels(self, paths: Sequence[str]) -> tuple[torch.Tensor | None, torch.Tensor | None, list[tuple[int, int]]]:
        """(pixel_values, image_grid_thw, original sizes) of a request's images. Raises ImageError
        (unreadable) or ValueError (refused by the processor, e.g. an aspect ratio over 200).
        With the image cache on, an image already processed (same file, size and mtime, same
        budget) is not decoded again: history frames were current frames a step earlier."""
        if not paths:
            return None, None, []
        if self._image_cache is None:
            pil = [load_image(p) for p in paths]
            px = self._process_images(pil)
            return px["pixel_values"], px["image_grid_thw"], [im.size for im in pil]
        parts = []
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                raise ImageError(f"missing image: {p}") from None
            key = (str(p), st.st_mtime_ns, st.st_size, self.min_pixels, self.max_pixels)
            hit = self._image_cache.get(key)
            if hit is None:
                im = load_image(p)
                px = self._process_images([im])
                hit = (px["pixel_values"], px["image_grid_thw"], im.size)
                self._image_cache.put(key, hit, hit[0].nbytes)
            parts.append(hit)
        return torch.cat([h[0] for h in parts]), torch.cat([h[1] for h in parts]), [h[2] for h in parts]

    def prepare(self, requests: Sequence[Request], offset: int = 0, apply_prune: bool = True) -> Prepared:
        """Tokenise, process images, plan Visual Focus, left-pad. Requests with an unreadable image
        become invalid replies (in `invalid`, by index) and are left out of the batch."""
        t0 = time.perf_counter()
        invalid: dict[int, Reply] = {}
        staged = []
        n_images = 0
        pixel_parts, grid_parts = [], []
        for k, req in enumerate(requests):
            conv = build_conversation(req, system=self.system, query=self._query(req))
            try:
                # Per request, so that an image the processor refuses invalidates its own request only.
                pv, thw, sizes = self._pixels(conv.images)
            except ImageError as e:
                invalid[offset + k] = Reply.invalid(str(e), "input")
                continue
            except ValueError as e:
                invalid[offset + k] = Reply.invalid(f"image rejected by the image processor: {e}", "input")
                continue
            if pv is not None:
                pixel_parts.append(pv)
                grid_parts.append(thw)
            staged.append((offset + k, req, conv, n_images, sizes))
            n_images += len(sizes)
        pixel = {"pixel_values": torch.cat(pixel_parts), "image_grid_thw": torch.cat(grid_parts)} \
            if pixel_parts else None
        grid_thw = pixel["image_grid_thw"] if pixel is not None else None

        plan = FocusPlan()
        rows: list[_Row] = []
        for idx, req, conv, start, sizes in staged:
            n = len(sizes)
            grids = [TokenGrid.from_thw(sz, grid_thw[start + j], self.merge, self.patch) for j, sz in enumerate(sizes)]
            plan.grids.extend(grids)
            counts = [g.tokens * int(grid_thw[start + j][0]) for j, g in enumerate(grids)]
            text = qwen_chat_text(conv, IMAGE_TOKEN)
            ids = self._encode(text, counts)
            types = (ids == self.image_token_id).long()
            if n:
                pos, _ = self.base.get_rope_index(ids[None], mm_token_type_ids=types[None],
                                                  image_grid_thw=grid_thw[start:start + n])
                pos = pos[:, 0]
            else:
                pos = torch.arange(len(ids)).view(1, -1).expand(3, -1).clone()
            row = _Row(index=idx, request=req, ids=ids, types=types, positions=pos,
                       seq_keep=torch.ones(len(ids), dtype=torch.bool), full_positions=pos, full_ids=ids,
                       full_types=types, image_slice=slice(start, start + n), orig_sizes=list(sizes),
                       grids=grids, current_images=[start + j for j in conv.current_images])
            row.visual_tokens = sum(counts)
            t_plan = time.perf_counter()
            self._plan_focus(row, conv, start, counts, plan, apply_prune)
            row.plan_s = time.perf_counter() - t_plan
            row.visual_tokens_kept = int(row.seq_keep.sum()) - (len(ids) - row.visual_tokens)
            if not bool(row.seq_keep.all()):
                row.ids, row.types = ids[row.seq_keep], types[row.seq_keep]
                row.positions = pos[:, row.seq_keep]
            rows.append(row)

        model_inputs = self._pad(rows)
        if pixel is not None:
            model_inputs["pixel_values"] = pixel["pixel_values"]
            model_inputs["image_grid_thw"] = grid_thw
        return Prepared(rows=rows, invalid=invalid, model_inputs=model_inputs, plan=plan,
                        preprocess_s=time.perf_counter() - t0)

    def _plan_focus(self, row: _Row, conv, start: int, counts: list[int], plan: FocusPlan, apply_prune: bool):
        focus = row.request.focus
        if focus is None or focus.empty:
            return
        skipped: dict[str, str] = {}
        # Where each image's tokens start in the unpruned sequence.
        pad_pos = (row.full_ids == self.image_token_id).nonzero().flatten()
        img_starts, acc = [], 0
        for c in counts:
            img_starts.append(int(pad_pos[acc]) if c else -1)
            acc += c
        for entry, rois in (focus.prune or {}).items():
            j = conv.entry_last_image.get(int(entry))
            if j is None:
                skipped[f"ggvr[{entry}]"] = "history entry missing or without images"
                continue
            rois = largest_per_label(tuple(rois))
            grid = row.grids[j]
            if not rois:
                skipped[f"ggvr[{entry}]"] = "no ROI: image kept whole"
                continue
            keep = grid.rois_mask(rois)
            if not keep.any():
                skipped[f"ggvr[{entry}]"] = "ROIs cover no token: image kept whole"
                continue
            t = counts[j] // grid.tokens  # temporal groups (1 for an image)
            keep_all = keep.repeat(t)
            row.focus_applied.setdefault("ggvr", []).append(
                {"entry": int(entry), "rois": len(rois), "tokens": counts[j], "kept": int(keep_all.sum()),
                 "applied": apply_prune})
            if apply_prune:
                plan.images.setdefault(start + j, ImageFocus()).keep = keep_all
                row.seq_keep[img_starts[j]:img_starts[j] + counts[j]] = keep_all
        if focus.reweight_source is not None and focus.reweight_rois:
            j = conv.entry_last_image.get(int(focus.reweight_source))
            if j is None:
                skipped["grvr"] = "history entry missing or without images"
            elif not row.current_images:
                skipped["grvr"] = "request has no current image"
            else:
                for ci in row.current_images:
                    f = plan.images.setdefault(ci, ImageFocus())
                    f.reweight_from = start + j
                    f.reweight_rois = tuple(focus.reweight_rois)
                    f.alpha, f.mu = float(focus.alpha), float(focus.mu)
                row.focus_applied["grvr"] = {"source": int(focus.reweight_source), "alpha": float(focus.alpha),
                                             "mu": float(focus.mu), "images": len(row.current_images)}
        row.focus_skipped.update(skipped)

    def _pad(self, rows: list[_Row]) -> dict[str, Any]:
        if not rows:
            return {}
        L = max(len(r.ids) for r in rows)
        B = len(rows)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        types = torch.zeros((B, L), dtype=torch.long)
        pos = torch.zeros((4, B, L), dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(r.ids)
            ids[b, L - n:] = r.ids
            mask[b, L - n:] = 1
            types[b, L - n:] = r.types
            pos[1:, b, L - n:] = r.positions
            pos[0, b, L - n:] = torch.arange(n)  # text positions: only used to build the attention mask
        return {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types, "position_ids": pos}

    # ---------------------------------------------------------------- generation
    def generate(self, requests: Sequence[Request]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(requests)
        for s in range(0, len(requests), self.batch_size):
            chunk = requests[s:s + self.batch_size]
            try:
                for i, rep in self._generate_batch(chunk, s).items():
                    replies[i] = rep
            except (RuntimeError, ValueError) as e:  # one bad batch must not stop the run
                if isinstance(e, torch.cuda.OutOfMemoryError if torch.cuda.is_available() else ()):
                    torch.cuda.empty_cache()
                log.exception("batch failed")
                for k in range(len(chunk)):
                    replies[s + k] = Reply.invalid(f"generation failed: {type(e).__name__}: {e}")
        return [r if r is not None else Reply.invalid("no reply") for r in replies]

    def _generate_batch(self, chunk: Sequence[Request], offset: int) -> dict[int, Reply]:
        t0 = time.perf_counter()
        prep = self.prepare(chunk, offset)
        out: dict[int, Reply] = dict(prep.invalid)
        if not prep.rows:
            return out
        max_new = max(r.request.max_new_tokens or self.max_new_tokens for r in prep.rows)
        device = self.model.device
        inputs = {k: v.to(device) for k, v in prep.model_inputs.items()}
        timer = _FirstTokenTimer()
        from transformers import LogitsProcessorList

        gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new, do_sample=self.do_sample, num_beams=1,
                                          return_dict_in_generate=True, output_logits=True,
                                          logits_processor=LogitsProcessorList([timer]),
                                          pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids),
                                          repetition_penalty=self.repetition_penalty)
        if self.do_sample:
            gen_kwargs["temperature"] = self.temperature or 1.0
        else:  # greedy: neutralise sampling settings a checkpoint's generation_config may carry
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        with _model_lock(self.model):
            t_gen = time.perf_counter()
            with torch.inference_mode(), focus_hook(self.base, prep.plan):
                result = self.model.generate(**inputs, **gen_kwargs)
        t_end = time.perf_counter()
        L = inputs["input_ids"].shape[1]
        new = result.sequences[:, L:].cpu()
        probs = torch.stack([torch.softmax(l.float(), dim=-1).max(dim=-1).values for l in result.logits], dim=1).cpu() \
            if result.logits else torch.zeros(new.shape[0], 0)
        t_first = timer.t_first or t_end
        timings = {"total": t_end - t0, "preprocess": prep.preprocess_s, "vision": prep.plan.vision_s,
                   "focus": prep.plan.focus_s, "prefill": t_first - t_gen, "decode": t_end - t_first,
                   "batch_size": float(len(prep.rows))}
        for b, row in enumerate(prep.rows):
            limit = row.request.max_new_tokens or self.max_new_tokens
            toks = new[b, :limit].tolist()
            n = len(toks)
            for k, t in enumerate(toks):
                if t in self.eos_ids:
                    n = k
                    break
            raw = self.tokenizer.decode(toks[:n], skip_special_tokens=True)
            tp = [float(p) for p in probs[b, :n]]
            rep = Reply(text=raw, token_probs=tp, answer_token_probs=self.answer_probs(toks[:n], raw, tp),
                        visual_tokens=row.visual_tokens,
                        visual_tokens_kept=row.visual_tokens_kept, focus_applied=self._focus_report(row, prep.plan),
                        timings=dict(timings, focus_plan=row.plan_s), prompt_tokens=len(row.ids), completion_tokens=n, raw_text=raw)
            if row.request.grounding:
                self._ground(rep, row)
            out[row.index] = rep
        return out

    def answer_probs(self, ids: Sequence[int], text: str, probs: Sequence[float]) -> list[float] | None:
        """The top-1 probabilities of the reply's answer tokens (core/answer_span.py): a reply with
        <think>/<answer> tags or a JSON answer is placed token by token by decoding prefixes."""
        if is_plain(text):
            return list(probs)
        ends = char_ends_by_decoding(lambda x: self.tokenizer.decode(x, skip_special_tokens=True), ids, text)
        return answer_token_probs(text, probs, ends)

    def _focus_report(self, row: _Row, plan: FocusPlan) -> dict:
        """What was actually applied: "ggvr" (a list, one item per pruned entry) and/or "grvr"."""
        rep = {k: v for k, v in row.focus_applied.items()}
        if "ggvr" in rep:
            rep["ggvr"] = [g for g in rep["ggvr"] if g.pop("applied", True)]
            if not rep["ggvr"]:
                del rep["ggvr"]
        if "grvr" in rep:
            results = [plan.grvr.get(ci) for ci in row.current_images]
            done = [r for r in results if r is not None]
            if not done:
                row.focus_skipped["grvr"] = "ROIs cover no token of the source image"
                del rep["grvr"]
            else:
                w = torch.cat([r.weights for r in done])
                rep["grvr"] = dict(rep["grvr"], categories=done[0].categories, weight_min=float(w.min()),
                                   weight_max=float(w.max()), weight_mean=float(w.mean()))
        if row.focus_skipped:
            log.debug("request %s: Visual Focus not applied: %s", row.request.id, row.focus_skipped)
        return rep

    def _ground(self, rep: Reply, row: _Row) -> None:
        """Boxes of the current frame's last image, in its original pixels."""
        if not row.current_images:
            return
        j = row.current_images[-1] - row.image_slice.start
        g = parse_grounding(rep.text, row.orig_sizes[j], self.grounding_coords, resized_size=row.grids[j].resized)
        rep.rois = list(g.boxes)
        rep.text = g.answer


def forward_logits(adapter: QwenVLAdapter, inputs: dict[str, Any], plan: FocusPlan | None = None) -> torch.Tensor:
    """One forward pass (no generation) with the adapter's focus hook: logits [B, L, V]. For tests
    and benchmarks."""
    device = adapter.model.device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with _model_lock(adapter.model), torch.inference_mode(), focus_hook(adapter.base, plan):
        return adapter.model(**inputs).logits.float().cpu()


__all__ = ["QwenVLAdapter", "Prepared", "forward_logits", "parse_dtype", "Box"]
