"""Is a model usable? One real request before anything is recorded against it.

    reply = preflight(adapter, request, spec)    # the reply, or ModelUnavailable saying why

At preflight every failure stops, a transient one too (after the adapter's own retries): a run
must not record a trace against a dead endpoint. The message names the cause, the model spec and
what to check (the key's environment variable, never the key; the base_url; the model name).
`check_model(spec)` is `edgevlm-eval models --check`: it loads the entry and asks one question
about a small generated image.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevlm_eval.core.errors import ModelUnavailable
from edgevlm_eval.core.types import Reply, Request

from .base import Adapter
from .openai_compat import failure_cause
from .registry import entry_summary, load_adapter, resolve, usage_cost

# A question any vision-language model can answer about any image (no task's label space).
NEUTRAL_QUERY = "Describe the image in one short sentence."


def _hint(cause: str, info: dict) -> str:
    """What to check for a cause, from what the adapter describes (names only, never a key)."""
    opts = info.get("options") or {}
    env, url, model = opts.get("api_key_env"), opts.get("base_url"), info.get("checkpoint")
    withheld = opts.get("key_withheld")
    key = (f"the key in ${env} ({'set' if os.environ.get(env) else 'NOT set'})" if env else
           f"no key is sent to this host (the entry's ${withheld} goes only to its own host: add "
           f"api_key_env={withheld} to the spec to send it)" if withheld else
           "no key is sent (the spec names no api_key_env: add ?api_key_env=NAME if the server needs one)")
    where = f"the base_url {url}" if url else "the checkpoint"
    return {
        "auth": f"{key}",
        "permission": f"{key} and whether its account may use model '{model}'",
        "not_found": f"the model name '{model}' and {where} (an OpenAI-compatible server lists its models at "
                     "/v1/models)",
        "bad_request": "the entry's options against what the server accepts (token_param: max_tokens | "
                       "max_completion_tokens, temperature: a number or none, max_new_tokens, logprobs)",
        "connection": f"that a server is listening at {where} and reachable from this machine",
        "timeout": f"that the server at {where} answers within the timeout ({opts.get('timeout', '?')} s); "
                   "raise ?timeout= for slow models",
        "rate_limit": "the account's rate limits and quota; try again later or lower concurrency",
        "server": f"the server at {where}: it kept failing after the retries (try again later, or raise "
                  "?max_retries=)",
        "reply": f"the model name '{model}' and max_new_tokens (the reply had no usable text; reasoning models "
                 "spend tokens before answering)",
        "image": "the server's image limits (the probe image was refused)",
        "too_large": "the server's request size limits",
        "input": "the image of the first frame (it cannot be used)",
    }.get(cause, f"the model spec and {where}")


def _usable(rep: Reply) -> bool:
    return rep.ok and bool((rep.raw_text or rep.text or "").strip() or rep.rois)


def preflight(adapter: Adapter, request: Request, spec: str) -> Reply:
    """Send `request` (one real frame) and return its reply when usable; otherwise raise
    ModelUnavailable naming the cause, the spec and what to check."""
    try:
        info = adapter.describe()
    except Exception:  # noqa: BLE001 - describe() only feeds the hints
        info = {}
    try:
        replies = adapter.generate([request])
    except Exception as e:  # noqa: BLE001 - a whole-adapter failure: say which
        raise ModelUnavailable(f"model '{spec}' is unavailable: the adapter failed on its first request "
                               f"({type(e).__name__}: {e})", spec=spec, cause="adapter") from e
    if len(replies) != 1:
        raise ModelUnavailable(f"model '{spec}' is unavailable: it answered {len(replies)} replies to 1 request",
                               spec=spec, cause="adapter")
    rep = replies[0]
    if _usable(rep):
        return rep
    if rep.ok:
        cause, error = "reply", "unusable reply: empty text"
    else:
        error = rep.error or "invalid reply"
        cause = failure_cause(error) or (rep.error_kind if rep.error_kind == "input" else "failed")
        if cause == "image" and not error.startswith("HTTP"):
            cause = "input"  # unreadable here, not refused by a server
    kind = f" [{rep.error_kind}]" if rep.error_kind else ""
    lines = [f"model '{spec}' is unavailable: {error}{kind}"]
    opts = info.get("options") or {}
    if opts.get("base_url"):
        lines.append(f"  endpoint: {opts['base_url']}, model: {info.get('checkpoint')}, key: "
                     + (f"${opts['api_key_env']}" if opts.get("api_key_env") else "none sent"))
    elif info.get("checkpoint"):
        lines.append(f"  checkpoint: {info.get('checkpoint')}")
    lines.append(f"  check: {_hint(cause, info)}")
    raise ModelUnavailable("\n".join(lines), spec=spec, cause=cause)


def probe_image(folder: str | Path, size: tuple[int, int] = (224, 168)) -> str:
    """A small PNG with a few coloured shapes on a sky-like background (nothing task-specific)."""
    import numpy as np
    from PIL import Image, ImageDraw

    w, h = size
    sky = np.linspace(210, 120, h, dtype=np.float32)[:, None, None] * np.array([0.6, 0.8, 1.0])
    im = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.rectangle([0, int(h * 0.7), w, h], fill=(90, 140, 70))  # ground
    d.rectangle([int(w * 0.15), int(h * 0.45), int(w * 0.45), int(h * 0.75)], fill=(200, 40, 40))  # a red box
    d.ellipse([int(w * 0.6), int(h * 0.12), int(w * 0.8), int(h * 0.38)], fill=(250, 220, 60))  # a yellow disc
    path = Path(folder) / "edgevlm-probe.png"
    im.save(path)
    return str(path)


@dataclass
class CheckReport:
    """What `edgevlm-eval models --check` found (no secrets: the key's variable name and whether it is set)."""

    spec: str
    entry: dict
    adapter: dict
    key_env: str | None
    key_set: bool | None
    reply: Reply
    latency_s: float
    cost_usd: float | None
    notes: list[str] = field(default_factory=list)


def check_model(spec: str, *, max_new_tokens: int | None = None, **overrides: Any) -> CheckReport:
    """Load `spec`, ask NEUTRAL_QUERY about probe_image() through preflight, report. The answer's
    length is the entry's own max_new_tokens unless given."""

    entry = resolve(spec)
    adapter = load_adapter(entry, **overrides)
    try:
        with tempfile.TemporaryDirectory(prefix="edgevlm-check-") as tmp:
            req = Request(id="check", images=(probe_image(tmp),), query=NEUTRAL_QUERY, max_new_tokens=max_new_tokens)
            t0 = time.perf_counter()
            rep = preflight(adapter, req, spec)
            latency = time.perf_counter() - t0
        info = adapter.describe()
    finally:
        adapter.close()
    env = (info.get("options") or {}).get("api_key_env") or entry.options.get("api_key_env")
    return CheckReport(spec=spec, entry=entry_summary(entry), adapter=info, key_env=env,
                       key_set=bool(os.environ.get(env)) if env else None, reply=rep, latency_s=latency,
                       cost_usd=usage_cost(entry, rep.prompt_tokens, rep.completion_tokens)
                       if rep.prompt_tokens is not None or rep.completion_tokens is not None else None)
