"""OpenAI-compatible chat-completions adapter: GPT-4o, vLLM / SGLang servers (e.g. MiniCPM-o 2.6),
DashScope's compatible mode (Qwen2.5-VL-72B), and `edgevlm-eval serve`.

- The official `openai` client; images travel as base64 data URLs (the file's own bytes when it is
  a PNG/JPEG, so nothing is re-encoded and the upload size is the file size).
- Requests run concurrently up to `concurrency`. Every failure is classified (`Reply.error_kind`,
  docs/models.md "Failure kinds"):
    fatal      HTTP 401 / 403 / 404 / 400 / 422 and other client errors: not retried, nothing more
               will succeed (wrong key, unknown model, a request the API refuses);
    transient  HTTP 429 / 5xx, timeouts, refused or dropped connections, and replies without
               usable text: retried with exponential backoff (the server's Retry-After honoured,
               capped) up to `max_retries` times, invalid only when the retries are spent;
    input      this request's image is unusable (unreadable here, or refused by the server).
  The error text starts with the cause in words (CAUSES) and never holds the key.
- Request parameters fit the API: `token_param` (max_tokens | max_completion_tokens) and
  `temperature` (a number, or none to omit it) default from the model name (o1/o3/o4, gpt-5 take
  max_completion_tokens and only the default temperature); a 400 saying one of them is unsupported
  is recovered from once, and the fix kept for the adapter's life.
- The API key is read from the environment variable the registry entry names (`api_key_env`),
  never from options or files, and never appears in describe(), repr(), errors or logs. Which
  host may receive which key is decided by the registry (registry.py, "keys and hosts").
- The visual tokens of an API model are out of reach: no Visual Focus (capabilities say so).
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from edgevlm_eval.core.answer_span import answer_token_probs, char_ends_from_pieces, is_plain
from edgevlm_eval.core.errors import ConfigError
from edgevlm_eval.core.grounding import (
    grounding_prompt,
    parse_grounding,
    qwen_resized_size,
)
from edgevlm_eval.core.images import ImageError, load_image
from edgevlm_eval.core.types import Reply, Request

from .base import Adapter, Price
from .kinds import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, openai_capabilities
from .prompt import R1_SUFFIX, Conversation, build_conversation

log = logging.getLogger(__name__)

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
# Local servers without authentication still need a non-empty key in the client. Never None: the
# client would then read $OPENAI_API_KEY itself and send it to whatever host it talks to.
NO_KEY = "EMPTY"
OPENAI_URL = "https://api.openai.com/v1"

# The cause of a failed reply, as the first words of its error text (after "HTTP nnn " when the
# server answered): callers (the preflight check) read the cause back with `failure_cause`.
CAUSES = {
    "auth": "authentication failed",
    "permission": "permission denied",
    "not_found": "not found",
    "bad_request": "bad request",
    "too_large": "request too large",
    "image": "unusable image",
    "rate_limit": "rate limited",
    "server": "server error",
    "timeout": "timeout",
    "connection": "connection failed",
    "reply": "unusable reply",
    "client": "client error",
}
_CAUSE_RE = re.compile(r"^(?:HTTP \d{3} )?(" + "|".join(re.escape(v) for v in CAUSES.values()) + ")")


def failure_cause(error: str | None) -> str | None:
    """The CAUSES key an invalid reply's error text starts with (None: not from this adapter)."""
    m = _CAUSE_RE.match(error or "")
    return next(k for k, v in CAUSES.items() if v == m.group(1)) if m else None


# Model families that take `max_completion_tokens` and only the default temperature (OpenAI's
# reasoning models and the gpt-5 family); matched on the name's last path part (vendor/model).
_NEW_API_FAMILIES = re.compile(r"^(o\d+(-.*)?|gpt-5.*)$", re.IGNORECASE)


def api_defaults(model: str) -> tuple[str, bool]:
    """(token parameter, whether to send a temperature) for a model name."""
    if _NEW_API_FAMILIES.match(model.rsplit("/", 1)[-1]):
        return "max_completion_tokens", False
    return "max_tokens", True


def safe_url(url: str | None) -> str | None:
    """A URL without user:password@ and query (where credentials sometimes hide), for describe()."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def url_host(url: str | None) -> str:
    """scheme://host:port of a URL (the unit a key is allowed to go to)."""
    parts = urlsplit(url or "")
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme or "", 0)
    return f"{(parts.scheme or '').lower()}://{(parts.hostname or '').lower()}:{port}"


_LOOPBACK = ("127.", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class Failure:
    """One failed attempt: what it means (ERROR_KINDS), its cause (CAUSES key), the text a user
    reads, and whether and after how long to try again."""

    kind: str
    cause: str
    message: str
    retry: bool = False
    wait: float = 0.0


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

    capabilities = openai_capabilities()

    @classmethod
    def capabilities_for(cls, options: dict):
        return openai_capabilities(options)

    def __init__(self, model: str, *, name: str = "openai", base_url: str | None = None,
                 api_key_env: str | None = None, require_key: bool = False, timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, backoff_max: float = 8.0,
                 retry_after_max: float = 60.0, concurrency: int = 8, max_new_tokens: int = 64,
                 temperature: float | str | None = "auto", token_param: str = "auto", logprobs: bool = False,
                 grounding_coords: str = "norm1000", min_pixels: int = QWEN_MIN_PIXELS,
                 max_pixels: int = QWEN_MAX_PIXELS, prompt_style: str = "plain", system: str | None = None,
                 base_url_env: str | None = None, price: Price | dict | None = None,
                 key_withheld: str | None = None):
        import openai

        if base_url_env and os.environ.get(base_url_env):
            base_url = os.environ[base_url_env]
        self.name = name
        self.model = model
        # Always explicit: without it the client reads $OPENAI_BASE_URL.
        self.base_url = str(base_url or OPENAI_URL)
        self.api_key_env = api_key_env or None
        # The env var of an entry's own key, not sent because base_url points elsewhere (for messages).
        self.key_withheld = key_withheld
        key = os.environ.get(api_key_env) if api_key_env else None
        if not key:
            if require_key:
                raise ConfigError(f"model '{name}' needs an API key: set the environment variable {api_key_env}",
                                  key="api_key_env")
            key = NO_KEY
        self._key_sent = key != NO_KEY
        if self._key_sent and urlsplit(self.base_url).scheme == "http" and \
                not (urlsplit(self.base_url).hostname or "").startswith(_LOOPBACK):
            log.warning("%s: the key in $%s goes to %s over plain HTTP (unencrypted)", name, api_key_env,
                        safe_url(self.base_url))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff, self.backoff_max = float(backoff), float(backoff_max)
        self.retry_after_max = float(retry_after_max)
        self.concurrency = max(1, int(concurrency))
        self.max_new_tokens = int(max_new_tokens)
        auto_param, auto_temp = api_defaults(model)
        if token_param not in ("auto", "max_tokens", "max_completion_tokens"):
            raise ConfigError(f"model '{name}': token_param must be auto, max_tokens or max_completion_tokens, "
                              f"got {token_param!r}", key="token_param")
        self.token_param = auto_param if token_param == "auto" else token_param
        if temperature == "auto":
            temperature = 0.0 if auto_temp else None
        elif temperature is not None and not isinstance(temperature, (int, float)):
            raise ConfigError(f"model '{name}': temperature must be a number, none (omit it) or auto, "
                              f"got {temperature!r}", key="temperature")
        self.temperature = None if temperature is None else float(temperature)
        self.logprobs = bool(logprobs)
        self.grounding_coords = grounding_coords
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.prompt_style = prompt_style
        self.system = system
        self.price = Price(**price) if isinstance(price, dict) else price
        # Retries are ours (counted, with our backoff); the client's own are off.
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"{name}-http")
        self._lock = threading.Lock()
        self.capabilities = self.capabilities_for({"logprobs": self.logprobs})

    def __repr__(self) -> str:  # never the key
        return f"OpenAIAdapter(name={self.name!r}, model={self.model!r}, base_url={safe_url(self.base_url)!r})"

    def describe(self) -> dict:
        return {"name": self.name, "adapter": "openai", "checkpoint": self.model,
                "options": {"base_url": safe_url(self.base_url), "api_key_env": self.api_key_env,
                            "key_sent": self._key_sent, "timeout": self.timeout, "max_retries": self.max_retries,
                            "concurrency": self.concurrency, "max_new_tokens": self.max_new_tokens,
                            "token_param": self.token_param, "temperature": self.temperature,
                            "logprobs": self.logprobs, "grounding_coords": self.grounding_coords,
                            "prompt_style": self.prompt_style},
                "price": self.price.to_json() if self.price else None,
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

    def _kwargs(self, messages: list[dict], max_new: int) -> dict[str, Any]:
        with self._lock:
            token_param, temperature = self.token_param, self.temperature
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, token_param: max_new}
        if temperature is not None:
            kwargs["temperature"] = temperature
        if self.logprobs:
            kwargs["logprobs"] = True
        return kwargs

    def _one(self, req: Request) -> Reply:
        t0 = time.perf_counter()
        conv = build_conversation(req, system=self.system, query=self._query(req))
        try:
            encoded = [data_url(p) for p in conv.images]
        except (ImageError, OSError) as e:
            return Reply.invalid(f"{CAUSES['image']}: {e}", "input", total=time.perf_counter() - t0)
        upload = sum(n for _, _, n in encoded)
        messages = openai_messages(conv, [u for u, _, _ in encoded])
        max_new = req.max_new_tokens or self.max_new_tokens
        t_enc = time.perf_counter()
        attempts = retries = 0
        fixed: set[str] = set()
        while True:
            kwargs = self._kwargs(messages, max_new)
            attempts += 1
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except Exception as e:  # noqa: BLE001 - every failure becomes an invalid reply
                fix = self._parameter_fix(e, kwargs)
                if fix and fix not in fixed:  # once per parameter, and not counted as a retry
                    fixed.add(fix)
                    continue
                failure = self._failure(e, retries)
            else:
                out = self._reply(resp, req, conv, [s for _, s, _ in encoded], t0, t_enc, attempts, upload)
                if isinstance(out, Reply):
                    return out
                failure = out
            if not failure.retry or retries >= self.max_retries:
                break
            retries += 1
            log.warning("%s: %s; retry %d/%d in %.2fs", self.name, failure.message, retries, self.max_retries,
                        failure.wait)
            time.sleep(failure.wait)
        rep = Reply.invalid(f"{failure.message} (after {attempts} attempt(s))", failure.kind,
                            total=time.perf_counter() - t0)
        rep.timings.update(attempts=float(attempts), upload_bytes=float(upload))
        return rep

    # ---------------------------------------------------------------- failures
    def _parameter_fix(self, e: Exception, kwargs: dict) -> str | None:
        """A 400 refusing max_tokens / max_completion_tokens / temperature: switch or drop it for
        the adapter's life and say so; returns what was fixed (None: not such an error)."""
        import openai

        if not isinstance(e, openai.APIStatusError) or e.status_code != 400:
            return None
        msg = _short(e, 1000)
        low = msg.lower()
        refused = any(w in low for w in ("unsupported", "not supported", "does not support", "unrecognized",
                                         "unknown parameter", "extra inputs are not permitted"))
        param = getattr(e, "param", None)

        def about(name: str) -> bool:  # refused, not merely out of range ("max_tokens is too large")
            if not refused:
                return False
            if param:  # the API names the parameter: trust it
                return param == name
            return re.search(rf"\b{name}\b", low) is not None

        current = next((p for p in ("max_tokens", "max_completion_tokens") if p in kwargs), None)
        with self._lock:
            if current and about(current):
                other = "max_completion_tokens" if current == "max_tokens" else "max_tokens"
                if self.token_param == current:
                    self.token_param = other
                    log.warning("%s: the server refuses %s (%s); sending %s from now on (set token_param=%s in "
                                "the entry to skip this)", self.name, current, self._redact(msg), other, other)
                return "token_param"
            if "temperature" in kwargs and about("temperature"):
                if self.temperature is not None:
                    log.warning("%s: the server refuses temperature=%s (%s); leaving it out from now on (set "
                                "temperature=none in the entry to skip this)", self.name, self.temperature,
                                self._redact(msg))
                    self.temperature = None
                return "temperature"
        return None

    def _redact(self, text: str) -> str:
        """Error texts go into logs and results: never with the key in them (some servers echo it)."""
        key = getattr(self._client, "api_key", None)
        if key and key != NO_KEY and len(key) >= 4:
            text = text.replace(key, "***")
        return text

    def _failure(self, e: Exception, retries: int) -> Failure:
        f = self._failure_raw(e, retries)
        return Failure(f.kind, f.cause, self._redact(f.message), f.retry, f.wait)

    def _backoff(self, retries: int) -> float:
        return min(self.backoff_max, self.backoff * (2 ** retries)) * (1.0 + 0.25 * random.random())

    def _key_hint(self) -> str:
        if self._key_sent:
            return f"check the key in ${self.api_key_env}"
        if self.key_withheld:
            return (f"no key was sent: the entry's key (${self.key_withheld}) goes only to the entry's own host; "
                    f"to send it to {safe_url(self.base_url)} add api_key_env={self.key_withheld} to the spec")
        if self.api_key_env:
            return f"no key was sent: ${self.api_key_env} is not set"
        return f"no key was sent (the spec names no api_key_env; add ?api_key_env=NAME for {safe_url(self.base_url)})"

    def _failure_raw(self, e: Exception, retries: int) -> Failure:
        import openai

        wait = self._backoff(retries)
        where = safe_url(self.base_url)
        if isinstance(e, openai.APITimeoutError):
            return Failure("transient", "timeout", f"{CAUSES['timeout']} after {self.timeout:g}s waiting for {where}",
                           True, wait)
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return Failure("transient", "connection",
                           f"{CAUSES['connection']} to {where}: {type(cause).__name__}: {_short(cause)}", True, wait)
        if isinstance(e, openai.APIResponseValidationError):
            return Failure("transient", "reply", f"{CAUSES['reply']}: {_short(e)}", True, wait)
        if isinstance(e, openai.APIStatusError):
            status = e.status_code
            said = _short(e)
            http = f"HTTP {status} "
            if status == 401:
                return Failure("fatal", "auth", f"{http}{CAUSES['auth']}: {self._key_hint()} (server: {said})")
            if status == 403:
                who = f"the key in ${self.api_key_env}" if self._key_sent else "this client (no key sent)"
                return Failure("fatal", "permission", f"{http}{CAUSES['permission']}: {who} may not use model "
                                                      f"'{self.model}' at {where} (server: {said})")
            if status == 404:
                return Failure("fatal", "not_found", f"{http}{CAUSES['not_found']}: no model '{self.model}' or no "
                                                     f"chat completions at {where}: check the model name and the "
                                                     f"base_url (server: {said})")
            if status in (400, 413, 422) and _about_image(e):
                return Failure("input", "image", f"{http}{CAUSES['image']}: {said}")
            if status == 413:
                return Failure("input", "too_large", f"{http}{CAUSES['too_large']}: {said}")
            if status == 429 or status >= 500 or status in (408, 409, 425):
                wait = min(self.retry_after_max, max(wait, _retry_after(e) or 0.0))
                cause = "rate_limit" if status == 429 else "timeout" if status == 408 else "server"
                return Failure("transient", cause, f"{http}{CAUSES[cause]}: {said}", True, wait)
            return Failure("fatal", "bad_request", f"{http}{CAUSES['bad_request']}: {said}")
        return Failure("fatal", "client", f"{CAUSES['client']}: {type(e).__name__}: {_short(e)}")

    # ---------------------------------------------------------------- replies
    def _reply(self, resp, req: Request, conv: Conversation, sizes, t0: float, t_enc: float, attempts: int,
               upload: int) -> Reply | Failure:
        t_end = time.perf_counter()
        timings = {"total": t_end - t0, "encode": t_enc - t0, "request": t_end - t_enc, "attempts": float(attempts),
                   "upload_bytes": float(upload)}
        extra = getattr(resp, "model_extra", None) or {}
        server = extra.get("edgevlm") or {}
        if isinstance(server, dict) and isinstance(server.get("timings"), dict):
            st = {k: float(v) for k, v in server["timings"].items() if isinstance(v, (int, float))}
            timings.update({f"server_{k}": v for k, v in st.items()})
            # `edgevlm-eval serve` reports its side: the trace recorder splits latency into these parts.
            if "total" in st:
                timings["inference"] = st["total"]
            if "queue" in st:
                timings["queue"] = st["queue"]
        wait = self._backoff(attempts - 1)
        choices = getattr(resp, "choices", None)
        if not choices:
            return Failure("transient", "reply", f"{CAUSES['reply']}: no choices", True, wait)
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        finish = getattr(choice, "finish_reason", None)
        if not isinstance(text, str) or not text.strip():
            what = "no content" if text is None else "empty text"
            hint = ": the token limit ended the reply before any text (raise max_new_tokens)" \
                if finish == "length" else ""
            return Failure("transient", "reply", f"{CAUSES['reply']}: {what} (finish_reason={finish}){hint}",
                           True, wait)
        probs = answer = None
        lp = getattr(choice, "logprobs", None)
        if lp is not None and getattr(lp, "content", None):
            probs = [math.exp(t.logprob) for t in lp.content]
            # the answer's tokens (core/answer_span.py), placed by each token's text (or bytes)
            ends = None if is_plain(text) else char_ends_from_pieces(
                [getattr(t, "token", None) for t in lp.content], text, [getattr(t, "bytes", None) for t in lp.content])
            answer = answer_token_probs(text, probs, ends)
        usage = getattr(resp, "usage", None)
        rep = Reply(text=text, token_probs=probs, answer_token_probs=answer, timings=timings, raw_text=text,
                    prompt_tokens=_int_or_none(getattr(usage, "prompt_tokens", None)),
                    completion_tokens=_int_or_none(getattr(usage, "completion_tokens", None)))
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


def _int_or_none(v) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _about_image(e) -> bool:
    """A refusal of the request's image (OpenAI: code invalid_image*, image_parse_error; `serve`:
    invalid_image, image_too_large), not of the request as a whole."""
    code = str(getattr(e, "code", None) or "") + " " + str(getattr(e, "param", None) or "")
    return "image" in code.lower()


def _retry_after(e) -> float | None:
    """Seconds the server asks to wait (Retry-After in seconds, or retry-after-ms)."""
    headers = e.response.headers if getattr(e, "response", None) is not None else {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            v = float(headers.get(name))
        except (TypeError, ValueError):
            continue
        if v >= 0 and math.isfinite(v):
            return v * scale
    return None


def _short(e: Exception, limit: int = 200) -> str:
    msg = str(getattr(e, "message", None) or e)
    return msg if len(msg) <= limit else msg[:limit] + "..."
