"""OpenAI-compatible chat-completions adapter: GPT-4o, vLLM / SGLang servers (e.g. MiniCPM-o 2.6),
DashScope's compatible mode (Qwen2.5-VL-72B), and `edgevlm-eval serve`.

- The official `openai` client; images travel as base64 data URLs (the file's own bytes when it is
  a PNG/JPEG, so nothing is re-encoded and the upload size is the file size).
- Requests run concurrently up to `concurrency`; each is retried with exponential backoff (and
  the server's Retry-After when given) on 429, 5xx, timeouts and connection errors, up to
  `max_retries` times. A request that still fails becomes `Reply.invalid(reason)`; the batch goes on.
- The API key is read from the environment variable the registry entry names (`api_key_env`),
  never from options or files, and never appears in describe(), repr() or logs.
- The visual tokens of an API model are out of reach: no Visual Focus (capabilities say so).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.grounding import grounding_prompt, parse_grounding, qwen_resized_size
from edgevlm_eval.core.images import ImageError, load_image
from edgevlm_eval.core.types import Reply, Request

from .base import Adapter, Capabilities
from .prompt import R1_SUFFIX, Conversation, build_conversation

log = logging.getLogger(__name__)

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
# Local servers without authentication still need a non-empty key in the client.
NO_KEY = "EMPTY"


def data_url(path: str) -> tuple[str, tuple[int, int], int]:
    """(data URL, image (width, height), bytes uploaded). Decodes the image first so a corrupt
    file fails here with a clear reason (ImageError), not as a server error."""
    im = load_image(path)
    mime = _MIME.get(Path(path).suffix.lower())
    if mime:
        raw = Path(path).read_bytes()
    else:  # other formats: send as PNG
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        raw, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}", im.size, len(raw)


def openai_messages(conv: Conversation, urls: Sequence[str]) -> list[dict]:
    """Chat messages in the OpenAI content-part format, images in prompt order."""
    out = []
    for m in conv.messages:
        if m.role != "user":
            out.append({"role": m.role, "content": "".join(p.value for p in m.parts)})
            continue
        content = []
        for p in m.parts:
            if p.kind == "image":
                content.append({"type": "image_url", "image_url": {"url": urls[p.image_index]}})
            else:
                content.append({"type": "text", "text": p.value})
        out.append({"role": "user", "content": content})
    return out


class OpenAIAdapter(Adapter):
    """Any model behind an OpenAI-compatible /v1/chat/completions endpoint."""

    def __init__(self, model: str, *, name: str = "openai", base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", require_key: bool = False, timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, backoff_max: float = 8.0, concurrency: int = 8,
                 max_new_tokens: int = 64, temperature: float = 0.0, logprobs: bool = False,
                 grounding_coords: str = "norm1000", min_pixels: int = 3136, max_pixels: int = 12845056,
                 prompt_style: str = "plain", system: str | None = None, base_url_env: str | None = None):
        import openai

        if base_url_env and os.environ.get(base_url_env):
            base_url = os.environ[base_url_env]
        self.name = name
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env) if api_key_env else None
        if not key:
            if require_key:
                raise ConfigError(f"model '{name}' needs an API key: set the environment variable {api_key_env}",
                                  key="api_key_env")
            key = NO_KEY
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff, self.backoff_max = float(backoff), float(backoff_max)
        self.concurrency = max(1, int(concurrency))
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.logprobs = bool(logprobs)
        self.grounding_coords = grounding_coords
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.prompt_style = prompt_style
        self.system = system
        # Retries are ours (counted, with our backoff); the client's own are off.
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=self.timeout, max_retries=0)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"{name}-http")
        self._lock = threading.Lock()
        self.capabilities = self.capabilities_for(logprobs=self.logprobs)

    @staticmethod
    def capabilities_for(logprobs: bool = False, **_: Any) -> Capabilities:
        return Capabilities(token_focus=False, grounding=True, logprobs=bool(logprobs), max_images=None, batched=True)

    def __repr__(self) -> str:  # never the key
        return f"OpenAIAdapter(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"

    def describe(self) -> dict:
        return {"name": self.name, "adapter": "openai", "checkpoint": self.model,
                "options": {"base_url": self.base_url, "api_key_env": self.api_key_env, "timeout": self.timeout,
                            "max_retries": self.max_retries, "concurrency": self.concurrency,
                            "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                            "logprobs": self.logprobs, "grounding_coords": self.grounding_coords,
                            "prompt_style": self.prompt_style},
                "capabilities": self.capabilities.to_json()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # ---------------------------------------------------------------- calls
    def generate(self, requests: Sequence[Request]) -> list[Reply]:
        return list(self._pool.map(self._one, requests))

    def _query(self, req: Request) -> str:
        q = grounding_prompt(req.query, self.grounding_coords) if req.grounding else req.query
        return q + R1_SUFFIX if self.prompt_style == "r1" else q

    def _one(self, req: Request) -> Reply:
        t0 = time.perf_counter()
        conv = build_conversation(req, system=self.system, query=self._query(req))
        try:
            encoded = [data_url(p) for p in conv.images]
        except (ImageError, OSError) as e:
            return Reply.invalid(str(e))
        upload = sum(n for _, _, n in encoded)
        kwargs: dict[str, Any] = dict(model=self.model, messages=openai_messages(conv, [u for u, _, _ in encoded]),
                                      max_tokens=req.max_new_tokens or self.max_new_tokens,
                                      temperature=self.temperature)
        if self.logprobs:
            kwargs["logprobs"] = True
        t_enc = time.perf_counter()
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.chat.completions.create(**kwargs)
                return self._reply(resp, req, conv, [s for _, s, _ in encoded], t0, t_enc, attempt + 1, upload)
            except Exception as e:  # noqa: BLE001 - every failure becomes an invalid reply
                retry, wait, last_error = self._classify(e, attempt)
                if not retry or attempt == self.max_retries:
                    break
                log.warning("%s: %s; retry %d/%d in %.2fs", self.name, last_error, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        rep = Reply.invalid(f"{last_error} (after {attempt + 1} attempt(s))", total=time.perf_counter() - t0)
        rep.timings.update(attempts=float(attempt + 1), upload_bytes=float(upload))
        return rep

    def _redact(self, text: str) -> str:
        """Error texts go into logs and results: never with the key in them (some servers echo it)."""
        key = getattr(self._client, "api_key", None)
        if key and key != NO_KEY and len(key) >= 4:
            text = text.replace(key, "***")
        return text

    def _classify(self, e: Exception, attempt: int) -> tuple[bool, float, str]:
        """(retry?, seconds to wait, reason); the reason is redacted."""
        retry, wait, reason = self._classify_raw(e, attempt)
        return retry, wait, self._redact(reason)

    def _classify_raw(self, e: Exception, attempt: int) -> tuple[bool, float, str]:
        import openai

        wait = min(self.backoff_max, self.backoff * (2 ** attempt)) * (1.0 + 0.25 * random.random())
        if isinstance(e, openai.APITimeoutError):
            return True, wait, f"timeout after {self.timeout:g}s"
        if isinstance(e, openai.APIConnectionError):
            return True, wait, f"connection error: {e}"
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            reason = f"HTTP {status}: {_short(e)}"
            if status == 429 or status >= 500:
                ra = e.response.headers.get("retry-after") if e.response is not None else None
                try:
                    wait = min(self.backoff_max, max(wait, float(ra))) if ra else wait
                except ValueError:
                    pass
                return True, wait, reason
            return False, 0.0, reason
        return False, 0.0, f"{type(e).__name__}: {e}"

    def _reply(self, resp, req: Request, conv: Conversation, sizes, t0: float, t_enc: float, attempts: int,
               upload: int) -> Reply:
        t_end = time.perf_counter()
        timings = {"total": t_end - t0, "encode": t_enc - t0, "request": t_end - t_enc, "attempts": float(attempts),
                   "upload_bytes": float(upload)}
        extra = getattr(resp, "model_extra", None) or {}
        server = extra.get("edgevlm") or {}
        if isinstance(server, dict) and server.get("timings"):
            st = {k: float(v) for k, v in server["timings"].items() if isinstance(v, (int, float))}
            timings.update({f"server_{k}": v for k, v in st.items()})
            # `edgevlm-eval serve` reports its side: the trace recorder splits latency into these parts.
            if "total" in st:
                timings["inference"] = st["total"]
            if "queue" in st:
                timings["queue"] = st["queue"]
        if not resp.choices:
            return Reply.invalid("reply without choices", **timings)
        choice = resp.choices[0]
        text = choice.message.content if choice.message else None
        if text is None:
            return Reply.invalid(f"reply without content (finish_reason={choice.finish_reason})", **timings)
        probs = None
        lp = getattr(choice, "logprobs", None)
        if lp is not None and getattr(lp, "content", None):
            import math

            probs = [math.exp(t.logprob) for t in lp.content]
        usage = getattr(resp, "usage", None)
        rep = Reply(text=text, token_probs=probs, timings=timings, raw_text=text,
                    prompt_tokens=getattr(usage, "prompt_tokens", None),
                    completion_tokens=getattr(usage, "completion_tokens", None))
        if isinstance(server, dict):
            rep.visual_tokens = server.get("visual_tokens")
            rep.visual_tokens_kept = server.get("visual_tokens_kept")
        if req.grounding and conv.current_images:
            size = sizes[conv.current_images[-1]]
            resized = qwen_resized_size(*size, self.min_pixels, self.max_pixels) \
                if self.grounding_coords == "qwen_abs" else None
            g = parse_grounding(text, size, self.grounding_coords, resized_size=resized)
            rep.rois, rep.text = list(g.boxes), g.answer
        return rep


def _short(e: Exception, limit: int = 200) -> str:
    msg = str(getattr(e, "message", None) or e)
    return msg if len(msg) <= limit else msg[:limit] + "..."
