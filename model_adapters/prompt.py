"""Request -> chat messages, shared by every adapter so that all models see the same prompt.

Layout (method.md §3, CRM):
- kind="snippet" entries go into the current user turn, oldest first, each as its images followed
  by its snippet text; then the current frame's images and the query.
- kind="turn" entries are native multi-turn context: a user turn (the entry's images + its query)
  and an assistant turn (the answer known at decision time).
Images are numbered in the order they appear in the prompt (the order of the visual tokens), and
the conversation remembers which prompt image is each history entry's last image (GGVR prunes it,
GRVR reads it) and which are the current frame's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgevlm_eval.core.types import Request

DEFAULT_SYSTEM = "You are a helpful assistant."

# VLM-R1's training prompt: think first, then answer inside <answer> tags.
R1_SUFFIX = (" Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.")


@dataclass
class Part:
    kind: str  # "image" | "text"
    value: str  # image path, or text
    image_index: int | None = None  # position among the prompt's images


@dataclass
class Message:
    role: str
    parts: list[Part] = field(default_factory=list)


@dataclass
class Conversation:
    messages: list[Message]
    images: list[str]  # every image path, in prompt order
    entry_last_image: dict[int, int]  # history entry index -> prompt image index of its last image
    current_images: list[int]  # prompt image indices of the current frame

    @property
    def current_last_image(self) -> int | None:
        return self.current_images[-1] if self.current_images else None


def build_conversation(req: Request, *, system: str | None = DEFAULT_SYSTEM, query: str | None = None) -> Conversation:
    """The chat for one request. `query` replaces req.query (e.g. with a grounding instruction)."""
    messages: list[Message] = []
    if system:
        messages.append(Message("system", [Part("text", system)]))
    images: list[str] = []
    entry_last: dict[int, int] = {}
    pending: list[Part] = []

    def add_images(paths) -> list[int]:
        idx = []
        for p in paths:
            pending.append(Part("image", str(p), len(images)))
            idx.append(len(images))
            images.append(str(p))
        return idx

    for i, entry in enumerate(req.history):
        idx = add_images(entry.images)
        if idx:
            entry_last[i] = idx[-1]
        if entry.kind == "snippet":
            if entry.text:
                pending.append(Part("text", entry.text))
        else:
            if entry.query:
                pending.append(Part("text", entry.query))
            messages.append(Message("user", pending))
            pending = []
            messages.append(Message("assistant", [Part("text", entry.text)]))
    current = add_images(req.images)
    pending.append(Part("text", req.query if query is None else query))
    messages.append(Message("user", pending))
    return Conversation(messages=messages, images=images, entry_last_image=entry_last, current_images=current)


def _strip_placeholders(text: str) -> str:
    for tok in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"):
        text = text.replace(tok, "")
    return text


def qwen_chat_text(conv: Conversation, image_token: str = "<|vision_start|><|image_pad|><|vision_end|>") -> str:
    """The Qwen2.5-VL chat format (what its chat template renders), ending with the assistant
    prompt. Written out here so that real checkpoints and the tiny model give the same prompt
    whatever template file a checkpoint ships."""
    out = []
    if not conv.messages or conv.messages[0].role != "system":
        out.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
    for m in conv.messages:
        # Placeholder tokens typed into a text would be taken for images: strip them.
        body = "".join(image_token if p.kind == "image" else _strip_placeholders(p.value) for p in m.parts)
        out.append(f"<|im_start|>{m.role}\n{body}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


def hf_messages(conv: Conversation, images: list | None = None) -> list[dict]:
    """Messages for `processor.apply_chat_template` (transformers' content-part format). With
    `images` (loaded PIL images in prompt order) the image parts carry them."""
    out = []
    for m in conv.messages:
        content = []
        for p in m.parts:
            if p.kind == "image":
                content.append({"type": "image", "image": images[p.image_index] if images else p.value})
            else:
                content.append({"type": "text", "text": p.value})
        out.append({"role": m.role, "content": content})
    return out
