"""Generic Hugging Face image-text-to-text adapter (`hf:<path-or-hub-id>`).

For any checkpoint that `AutoModelForImageTextToText` + `AutoProcessor` load and whose processor
has a chat template (LLaVA-style, SmolVLM, Idefics, Gemma 3, MiniCPM-V 4.6/4.7 native classes, ...).
The prompt is the shared conversation (prompt.py) rendered by the processor's own chat template,
batched with left padding, greedy by default. Visual tokens are not reachable in a model-agnostic
way, so this adapter does no Visual Focus (capabilities say so); grounding uses the
configured coordinate convention (default 0-1000).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch

from edgevlm_eval.core.answer_span import answer_token_probs, char_ends_by_decoding, is_plain
from edgevlm_eval.core.grounding import grounding_prompt, parse_grounding
from edgevlm_eval.core.images import ImageError, load_image
from edgevlm_eval.core.types import Reply, Request

from .base import Adapter
from .kinds import (
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    check_checkpoint_folder,
    hf_capabilities,
)
from .prompt import R1_SUFFIX, build_conversation, hf_messages
from .qwen2_5_vl import parse_dtype

log = logging.getLogger(__name__)


def tiny_processor():
    """A processor for the tiny Qwen2.5-VL (transformers 5.23 without torchvision refuses
    `video_processor=None` in its type check; this subclass accepts it)."""
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    from .tiny import CHAT_TEMPLATE, build_tiny_qwen

    class _NoVideoProcessor(Qwen2_5_VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    tiny = build_tiny_qwen()
    return _NoVideoProcessor(image_processor=tiny.image_processor, tokenizer=tiny.tokenizer,
                             video_processor=None, chat_template=CHAT_TEMPLATE)


class HFImageTextAdapter(Adapter):
    capabilities = hf_capabilities()

    @classmethod
    def capabilities_for(cls, options: dict):
        return hf_capabilities(options)

    def __init__(self, checkpoint: str, *, name: str = "hf", dtype: Any = "auto", device: str | None = None,
                 device_map: Any = None, max_new_tokens: int = 64, batch_size: int = 8,
                 grounding_coords: str = "norm1000", prompt_style: str = "plain", system: str | None = None,
                 trust_remote_code: bool = False, model: Any = None, processor: Any = None,
                 processor_kwargs: dict | None = None):
        self.name, self.checkpoint = name, checkpoint
        self.max_new_tokens, self.batch_size = int(max_new_tokens), max(1, int(batch_size))
        self.grounding_coords, self.prompt_style, self.system = grounding_coords, prompt_style, system
        self.processor_kwargs = dict(processor_kwargs or {})
        self.options = dict(dtype=str(dtype), device=device, device_map=device_map, max_new_tokens=max_new_tokens,
                            batch_size=self.batch_size, grounding_coords=grounding_coords, prompt_style=prompt_style)
        if model is None and checkpoint == "tiny":
            from .tiny import build_tiny_qwen

            model, processor = build_tiny_qwen().model, tiny_processor()
        if model is None:
            # A local folder is checked before transformers sees it (a clear error, not a traceback).
            checkpoint = check_checkpoint_folder(checkpoint, adapter="hf") or checkpoint
            from transformers import AutoModelForImageTextToText, AutoProcessor

            kw: dict[str, Any] = {"dtype": parse_dtype(dtype), "trust_remote_code": trust_remote_code}
            if device_map is not None:
                kw["device_map"] = device_map
            model = AutoModelForImageTextToText.from_pretrained(checkpoint, **kw)
            if device_map is None and device:
                model = model.to(device)
            model.eval()
            processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
        self.model, self.processor = model, processor
        tok = getattr(processor, "tokenizer", processor)
        tok.padding_side = "left"
        self.tokenizer = tok

    def describe(self) -> dict:
        return {"name": self.name, "adapter": "hf", "checkpoint": self.checkpoint, "options": self.options,
                "capabilities": self.capabilities.to_json()}

    def _resized(self, size: tuple[int, int]) -> tuple[int, int] | None:
        """The image size a Qwen-style processor resizes to (for `qwen_abs` grounding coordinates)."""
        if self.grounding_coords != "qwen_abs":
            return None
        from edgevlm_eval.core.grounding import qwen_resized_size

        limits = dict(getattr(getattr(self.processor, "image_processor", None), "size", None) or {})
        limits.update(self.processor_kwargs.get("images_kwargs", {}).get("size", {}))
        return qwen_resized_size(*size, int(limits.get("shortest_edge") or QWEN_MIN_PIXELS),
                                 int(limits.get("longest_edge") or QWEN_MAX_PIXELS))

    def _query(self, req: Request) -> str:
        q = grounding_prompt(req.query, self.grounding_coords) if req.grounding else req.query
        return q + R1_SUFFIX if self.prompt_style == "r1" else q

    def generate(self, requests: Sequence[Request]) -> list[Reply]:
        out: list[Reply] = []
        for s in range(0, len(requests), self.batch_size):
            chunk = requests[s:s + self.batch_size]
            try:
                out.extend(self._batch(chunk))
            except (RuntimeError, ValueError) as e:
                if len(chunk) == 1:
                    log.warning("request %s failed: %s", chunk[0].id, e)
                    out.append(Reply.invalid(f"generation failed: {type(e).__name__}: {e}"))
                else:  # find the culprit: one by one, so that only it becomes invalid
                    out.extend(self.generate([r])[0] for r in chunk)
        return out

    def _batch(self, chunk: Sequence[Request]) -> list[Reply]:
        t0 = time.perf_counter()
        replies: list[Reply | None] = [None] * len(chunk)
        texts, images, keep, sizes = [], [], [], []
        for k, req in enumerate(chunk):
            conv = build_conversation(req, system=self.system, query=self._query(req))
            try:
                pil = [load_image(p) for p in conv.images]
            except ImageError as e:
                replies[k] = Reply.invalid(str(e), "input")
                continue
            texts.append(self.processor.apply_chat_template(hf_messages(conv), add_generation_prompt=True,
                                                            tokenize=False))
            images.extend(pil)
            keep.append(k)
            sizes.append(pil[conv.current_images[-1]].size if conv.current_images else None)
        if keep:
            inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt",
                                    **self.processor_kwargs)
            inputs = {k: v.to(self.model.device) for k, v in inputs.items() if hasattr(v, "to")}
            max_new = max(chunk[k].max_new_tokens or self.max_new_tokens for k in keep)
            t1 = time.perf_counter()
            with torch.inference_mode():
                # plain greedy whatever sampling settings the checkpoint's generation_config carries
                res = self.model.generate(**inputs, max_new_tokens=max_new, do_sample=False, num_beams=1,
                                          temperature=None, top_p=None, top_k=None, repetition_penalty=1.0,
                                          return_dict_in_generate=True, output_logits=True,
                                          pad_token_id=self.tokenizer.pad_token_id)
            t2 = time.perf_counter()
            L = inputs["input_ids"].shape[1]
            eos = self.model.generation_config.eos_token_id
            eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) | {self.tokenizer.eos_token_id}
            probs = torch.stack([torch.softmax(l.float(), -1).max(-1).values for l in res.logits], 1).cpu()
            for b, k in enumerate(keep):
                toks = res.sequences[b, L:].tolist()[: chunk[k].max_new_tokens or self.max_new_tokens]
                n = next((i for i, t in enumerate(toks) if t in eos), len(toks))
                text = self.tokenizer.decode(toks[:n], skip_special_tokens=True)
                tp = [float(p) for p in probs[b, :n]]
                ends = None if is_plain(text) else char_ends_by_decoding(
                    lambda x: self.tokenizer.decode(x, skip_special_tokens=True), toks[:n], text)
                rep = Reply(text=text, raw_text=text, token_probs=tp, answer_token_probs=answer_token_probs(text, tp, ends),
                            timings={"total": t2 - t0, "generate": t2 - t1, "batch_size": float(len(keep))},
                            prompt_tokens=int(inputs["attention_mask"][b].sum()), completion_tokens=n)
                if chunk[k].grounding and sizes[b] is not None:
                    g = parse_grounding(text, sizes[b], self.grounding_coords, resized_size=self._resized(sizes[b]))
                    rep.rois, rep.text = list(g.boxes), g.answer
                replies[k] = rep
        return [r if r is not None else Reply.invalid("no reply") for r in replies]
