"""What the built-in adapter kinds are, in one place and without importing torch: their pixel
budgets, their capabilities, and what a local checkpoint folder must hold.

The registry lists entries (`edgevlm-eval models`) from these facts without loading weights; the
adapter classes declare the same facts by reading them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.grounding import QWEN_CELL, QWEN_MAX_PIXELS, QWEN_MIN_PIXELS

from .base import Capabilities

# Qwen2.5-VL's token cell and the public checkpoints' pixel limits live with its resize rule.
QWEN_PIXELS = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": QWEN_MAX_PIXELS}
# The tiny test model: <= 64 tokens per image, fast on a CPU.
TINY_PIXELS = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": 64 * QWEN_CELL * QWEN_CELL}  # 50176
# The demo world's trained checkpoints: the SVLM sees about a quarter of the LVLM's pixels
# (32 vs 144 visual tokens for a 448x252 frame).
DEMO_SVLM_PIXELS = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": 40 * QWEN_CELL * QWEN_CELL}  # 31360
DEMO_LVLM_PIXELS = {"min_pixels": QWEN_MIN_PIXELS, "max_pixels": 144 * QWEN_CELL * QWEN_CELL}  # 112896


def qwen_capabilities(options: Mapping[str, Any] | None = None) -> Capabilities:
    """Qwen2.5-VL through transformers: the visual tokens are ours (Visual Focus), logprobs from logits."""
    return Capabilities(token_focus=True, grounding=True, logprobs=True, max_images=None, batched=True)


def openai_capabilities(options: Mapping[str, Any] | None = None) -> Capabilities:
    """An HTTP model: visual tokens out of reach; logprobs only when asked for (and served)."""
    return Capabilities(token_focus=False, grounding=True, logprobs=bool((options or {}).get("logprobs", False)),
                        max_images=None, batched=True)


def hf_capabilities(options: Mapping[str, Any] | None = None) -> Capabilities:
    """Any image-text-to-text checkpoint: no model-agnostic access to visual tokens."""
    return Capabilities(token_focus=False, grounding=True, logprobs=True, max_images=None, batched=True)


BUILTIN_CAPABILITIES = {"qwen2_5_vl": qwen_capabilities, "openai": openai_capabilities, "hf": hf_capabilities}

_WEIGHTS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "*.safetensors.index.json", "*.bin.index.json")


def check_checkpoint_folder(checkpoint: str, *, adapter: str, needs: tuple[str, ...] = ()) -> str | None:
    """A checkpoint given as a local path: the folder (as text) after checking it holds a model;
    None when `checkpoint` is a hub id. Raises a ConfigError naming the folder and what is missing,
    so that transformers is never asked to load an empty or wrong folder.

    `needs`: further files the adapter reads, each a name or alternatives joined by '|'."""
    local = Path(checkpoint).expanduser()
    looks_local = local.is_absolute() or checkpoint.startswith((".", "~")) or local.exists()
    if not looks_local:
        return None
    if not local.is_dir():
        what = f"checkpoint {local} is a file, not a folder" if local.exists() else \
            f"checkpoint folder not found: {local}"
        raise ConfigError(f"{what} (a {adapter} checkpoint is a folder with config.json and weight files)",
                          key="checkpoint")
    missing = []
    if not (local / "config.json").is_file():
        missing.append("config.json")
    if not any(next(local.glob(pat), None) for pat in _WEIGHTS):
        missing.append("weight files (*.safetensors or *.bin)")
    for need in needs:
        if not any((local / n).is_file() for n in need.split("|")):
            missing.append(" or ".join(need.split("|")))
    if missing:
        raise ConfigError(f"checkpoint folder {local} has no {', no '.join(missing)}: a {adapter} checkpoint "
                          f"folder holds config.json, the weights and the tokenizer/processor files, as written "
                          f"by save_pretrained (found: {', '.join(sorted(p.name for p in local.iterdir())[:8]) or 'nothing'})",
                          key="checkpoint")
    return str(local)
