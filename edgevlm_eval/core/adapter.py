"""The model-adapter interface (docs/models.md): one batched, message-based call.

    replies = adapter.generate([Request, ...])   # same length and order as the requests

An adapter declares what it can do in `capabilities`; the engine respects it (for example it asks
for Visual Focus only when `token_focus` is true, and records that VFM was not applied otherwise).
The registry reads an adapter class's capabilities for given options, without loading weights,
from `capabilities_for(options)` (by default the class attribute).

A third-party adapter (a user models.yaml entry with `adapter: package.module:Class`, docs/models.md)
subclasses `Adapter`, is built as `Class(checkpoint, name=NAME, **options)`, and implements
`generate()` (one Reply per Request, failures as `Reply.invalid(reason, kind)`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from edgevlm_eval.core.types import Reply, Request


@dataclass(frozen=True)
class Capabilities:
    token_focus: bool = False  # can apply GGVR/GRVR (Focus) to its visual tokens
    grounding: bool = False  # can answer with <ROI>s (boxes) when Request.grounding is set
    logprobs: bool = False  # fills Reply.token_probs (LAECIPS confidence)
    max_images: int | None = None  # images per request, history included; None = no limit
    batched: bool = True  # generate() runs a list of requests as one batch (else one by one)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Price:
    """What a paid API charges, in USD per million tokens; `source` says where the figure comes
    from and when it was read (prices change: a results file keeps the figure it used)."""

    input_per_mtok: float
    output_per_mtok: float
    source: str = ""

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this many prompt (input) and completion (output) tokens."""
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6

    def to_json(self) -> dict:
        return {"input_usd_per_mtok": self.input_per_mtok, "output_usd_per_mtok": self.output_per_mtok,
                "source": self.source}


class Adapter:
    """Base class of every model adapter."""

    name: str = "adapter"
    capabilities: Capabilities = Capabilities()

    @classmethod
    def capabilities_for(cls, options: dict) -> Capabilities:
        """What an instance built with `options` can do, known without building it."""
        return cls.capabilities

    def generate(self, requests: Sequence[Request]) -> list[Reply]:
        """Answer every request. Must not raise for a per-request failure: such a request gets
        `Reply.invalid(reason)`. Raises only for failures of the whole adapter."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance for results files: adapter, checkpoint, options (no secrets)."""
        return {"name": self.name, "capabilities": self.capabilities.to_json()}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
