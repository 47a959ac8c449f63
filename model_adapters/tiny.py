"""Tiny Qwen2.5-VL built in-process from a config (random, seeded weights) for tests and demos.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a few hundred words, the
image processor is the real `Qwen2VLImageProcessorPil` (same 14 px patches, 28 px merged cells,
`smart_resize` as the public checkpoints), and the model is the real
`Qwen2_5_VLForConditionalGeneration` class with a very small config.
Its answers are gibberish, but every code path (batching, M-RoPE, GGVR, GRVR, grounding parsing,
serving) runs exactly as with a real checkpoint.

Built once per process and argument set (many tests use it).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Qwen2.5-VL's special tokens, in the order the real vocabulary has them after the text tokens.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The Qwen2.5-VL chat template (text + image parts), as shipped with the public checkpoints.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words the tiny BPE is trained on, so prompts of the shipped tasks tokenize into few tokens.
_CORPUS = """
You are a helpful assistant. Identify which object categories from the list below appear in the image.
car truck bus trailer construction vehicle pedestrian motorcycle bicycle traffic cone barrier rider train
Determine which hand gesture the person is performing. pointing with one finger two fingers click
throw up down left right open twice double zoom in out no gesture
Describe what the chef in the picture is doing. breaking mixing baking cutting peeling boiling
This is the image from seconds ago; detected nothing. Answer with labels separated by commas.
Locate every object and output its bbox coordinates in JSON format with bbox_2d and label.
<think> </think> <answer> </answer> ```json [{"bbox_2d": [10, 20, 30, 40], "label": "car"}] ```
0 1 2 3 4 5 6 7 8 9 the a of and or in on is are with from to image frame picture current previous
"""


@dataclass
class TinyQwen:
    """A built tiny model with its tokenizer and image processor."""

    model: Any
    tokenizer: Any
    image_processor: Any
    config: Any


def _train_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # The full byte alphabet, so any text (and any answer) encodes without unknown tokens.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def tiny_config(tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                vision_hidden: int = 32, vision_depth: int = 2):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = hidden // heads
    # mrope_section splits head_dim/2 rotary frequencies over (t, h, w); it must sum to head_dim/2.
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=vision_depth, hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_heads=2,
        out_hidden_size=hidden, patch_size=14, temporal_patch_size=2, spatial_merge_size=2, window_size=112,
        fullatt_block_indexes=[vision_depth - 1], tokens_per_second=2,
    )
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


@functools.lru_cache(maxsize=4)
def build_tiny_qwen(seed: int = 0, hidden: int = 64, layers: int = 2) -> TinyQwen:
    """The tiny model (eval mode, float32, CPU). Cached per process: treat it as read-only."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    tokenizer = _train_tokenizer()
    config = tiny_config(tokenizer, hidden=hidden, layers=layers)
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    from .kinds import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS

    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": QWEN_MAX_PIXELS})
    return TinyQwen(model=model, tokenizer=tokenizer, image_processor=image_processor, config=config)


def save_tiny_qwen(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny model as a checkpoint folder (model, tokenizer, preprocessor config), the
    layout `qwen2_5_vl:/path` loads. The processor is saved part by part (transformers 5.x:
    saving the whole processor fails without a video processor)."""
    tiny = build_tiny_qwen(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tiny.model.save_pretrained(path)
    tiny.tokenizer.save_pretrained(path)
    tiny.image_processor.save_pretrained(path)
    # The public checkpoints' preprocessor_config.json carries the pixel limits as min/max_pixels.
    pp = path / "preprocessor_config.json"
    cfg = json.loads(pp.read_text())
    from .kinds import QWEN_PIXELS

    cfg.update(QWEN_PIXELS)
    pp.write_text(json.dumps(cfg, indent=2))
    return path
