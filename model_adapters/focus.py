"""Visual Focus (method.md §3, VFM) on Qwen2.5-VL's merged visual tokens.

The engine speaks in ROIs in original pixels; here they become masks over an image's token grid.
Qwen2.5-VL resizes an image to multiples of 28 px (`smart_resize`), cuts 14 px patches and merges
2x2 of them into one token per 28x28 cell; the tokens come out of the vision tower in raster
order over those cells (checked on transformers 5.x). So token k of an image with a grid of
`grid_w` cells per row covers cell (row k // grid_w, col k % grid_w).

- GGVR keeps, in a history image, the tokens whose cell overlaps an ROI (largest ROI per label);
  the adapter drops the rest from the sequence and keeps the kept tokens' M-RoPE positions.
- GRVR (eq. 7-11) re-weights the current frame's tokens by their cosine similarity to the
  history image's per-category ROI features.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from edgevlm_eval.core.types import Box, largest_per_label


@dataclass(frozen=True)
class TokenGrid:
    """An image's merged-token grid: original size, grid of `cell`-pixel cells of the resized image."""

    orig_w: int
    orig_h: int
    grid_h: int  # cells per column (resized height / cell)
    grid_w: int  # cells per row
    cell: int = 28

    @classmethod
    def from_thw(cls, orig_size: tuple[int, int], thw: Sequence[int], merge: int = 2, patch: int = 14) -> "TokenGrid":
        t, h, w = (int(v) for v in thw)
        return cls(orig_w=orig_size[0], orig_h=orig_size[1], grid_h=h // merge, grid_w=w // merge, cell=patch * merge)

    @property
    def tokens(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def resized(self) -> tuple[int, int]:
        """(width, height) of the resized image the model sees."""
        return self.grid_w * self.cell, self.grid_h * self.cell

    def cell_range(self, lo: float, hi: float, scale: float, n: int) -> range:
        """Cells [a, b) whose span [c*cell, (c+1)*cell) overlaps (lo, hi) with positive length,
        after scaling original pixels to resized pixels."""
        lo_r, hi_r = lo * scale, hi * scale
        if hi_r <= lo_r:
            return range(0)
        a = max(0, math.floor(lo_r / self.cell))
        b = min(n, math.ceil(hi_r / self.cell))
        return range(a, max(a, b))

    def roi_mask(self, box: Box) -> torch.Tensor:
        """Bool mask over the image's tokens (raster order): the cells the ROI overlaps."""
        mask = torch.zeros(self.grid_h, self.grid_w, dtype=torch.bool)
        sx = self.resized[0] / self.orig_w
        sy = self.resized[1] / self.orig_h
        cols = self.cell_range(min(box.x1, box.x2), max(box.x1, box.x2), sx, self.grid_w)
        rows = self.cell_range(min(box.y1, box.y2), max(box.y1, box.y2), sy, self.grid_h)
        if len(cols) and len(rows):
            mask[rows.start:rows.stop, cols.start:cols.stop] = True
        return mask.flatten()

    def rois_mask(self, boxes: Sequence[Box]) -> torch.Tensor:
        mask = torch.zeros(self.tokens, dtype=torch.bool)
        for b in boxes:
            mask |= self.roi_mask(b)
        return mask


def scale_rows(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Row k of `features` times weights[k] (GRVR's re-weighting; ones give the input back exactly)."""
    return features * weights.to(features.dtype).unsqueeze(-1)


@dataclass
class GRVRResult:
    weights: torch.Tensor  # per target token: alpha + (1 - alpha) * W_s[k]
    categories: list[str]


def grvr_weights(source: torch.Tensor, source_grid: TokenGrid, rois: Sequence[Box], target: torch.Tensor,
                 alpha: float, mu: float) -> GRVRResult | None:
    """Eq. 7-11: f_c = mean of the source tokens inside c's (largest) ROI; S_c[k] = cos(f_c, v_k);
    s = mean over c of S_c; W_s = mu * sigmoid(s) + b with b = 1 - mu / 2; the token k is then
    t_k <- alpha * t_k + (1 - alpha) * W_s[k] * t_k = (alpha + (1 - alpha) * W_s[k]) * t_k.
    None when no ROI covers a token (GRVR changes nothing then)."""
    src = source.float()
    tgt = target.float()
    sims, cats = [], []
    for box in largest_per_label(rois):
        m = source_grid.roi_mask(box)
        if not m.any():
            continue
        f_c = src[m].mean(dim=0)
        sims.append(torch.nn.functional.cosine_similarity(tgt, f_c.unsqueeze(0), dim=-1))
        cats.append(box.label)
    if not sims:
        return None
    s = torch.stack(sims).mean(dim=0)
    b = 1.0 - mu / 2.0
    w_s = mu * torch.sigmoid(s) + b
    return GRVRResult(weights=alpha + (1.0 - alpha) * w_s, categories=cats)


@dataclass
class ImageFocus:
    """What to do to one image of a batch (images numbered in batch order)."""

    keep: torch.Tensor | None = None  # GGVR: bool per token, None = keep all
    reweight_from: int | None = None  # GRVR: batch image index of the source history image
    reweight_rois: tuple[Box, ...] = ()
    alpha: float = 0.7
    mu: float = 1.0


@dataclass
class FocusPlan:
    images: dict[int, ImageFocus] = field(default_factory=dict)
    grids: list[TokenGrid] = field(default_factory=list)
    # filled while running: batch image index -> GRVR result / stats
    grvr: dict[int, GRVRResult | None] = field(default_factory=dict)
    vision_s: float = 0.0
    focus_s: float = 0.0

    def apply(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """GRVR on the full features (the source's ROI features are read before any GGVR drop),
        then GGVR row drops."""
        out = list(feats)
        for i, f in self.images.items():
            if f.reweight_from is not None and f.reweight_rois:
                res = grvr_weights(feats[f.reweight_from], self.grids[f.reweight_from], f.reweight_rois,
                                   feats[i], f.alpha, f.mu)
                self.grvr[i] = res
                if res is not None:
                    out[i] = scale_rows(out[i], res.weights.to(out[i].device))
        for i, f in self.images.items():
            if f.keep is not None:
                out[i] = out[i][f.keep.to(out[i].device)]
        return tuple(out)


@contextlib.contextmanager
def focus_hook(base_model, plan: FocusPlan | None):
    """Wrap the instance's `get_image_features` for the duration of one batch so that Visual Focus
    acts on the merged tokens after the vision tower. functools.wraps keeps the signature, which
    `generate` inspects to choose the arguments."""
    import time

    had_own = "get_image_features" in vars(base_model)
    original = base_model.get_image_features

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        t1 = time.perf_counter()
        if plan is not None:
            plan.vision_s += t1 - t0
            if plan.images:
                out.pooler_output = plan.apply(out.pooler_output)
                plan.focus_s += time.perf_counter() - t1
        return out

    base_model.get_image_features = wrapped
    try:
        yield plan
    finally:
        if had_own:
            base_model.get_image_features = original
        else:  # remove the instance attribute: the class method shows through again
            del base_model.get_image_features
