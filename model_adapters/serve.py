"""`edgevlm-eval serve --model M --port P`: an OpenAI-compatible endpoint for any local adapter.

So that a local model can play the cloud LVLM over real HTTP (traces with real network latency),
and so that the OpenAI adapter is tested end to end. Endpoints: POST /v1/chat/completions,
GET /v1/models, GET /health.

Requests that arrive together are run as one batch (up to --max-batch, waiting at most
--batch-wait-ms for more), since the local adapters are batched. Images must be base64 data URLs
(the server fetches nothing). The message layout maps back onto the adapter's Request exactly as
prompt.py builds it: in a user message, each run of images followed by a text is one step; the
last step of the last user message is the current frame (images + query), earlier steps are
snippet history entries, and a user message answered by an assistant message is a native turn.

The reply carries the usual OpenAI fields (with logprobs when asked) plus an `edgevlm` object:
server-side timings, visual token counts and the focus applied.

Safety (ServeLimits): a body over --max-body-mb, an image over --max-image-mb or over
--max-image-megapixels (read from the image header, before decoding) is answered 413; a malformed
body (not JSON, messages not a list, unknown content parts, an unreadable image) 400, with a JSON
error naming the limit or the fault. A request never fails its batch neighbours: a batch the
adapter raises on is re-run one request at a time. A request whose client has gone (disconnected,
or timed out) before its batch runs is dropped, not computed; /health counts them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from fastapi import (
    Request as HTTPRequest,  # module level: FastAPI resolves the string annotations here
)

from edgevlm_eval.core.types import HistoryEntry, Reply, Request

from .base import Adapter

log = logging.getLogger(__name__)

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp"}


class BadRequest(ValueError):
    """A request this server refuses: HTTP `status` with an OpenAI-style error `code`."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code or self.code
        self.status = status or self.status


class TooLarge(BadRequest):
    status = 413
    code = "request_too_large"


@dataclass(frozen=True)
class ServeLimits:
    """What one request may hold. Images are checked from their header before being decoded."""

    max_body_bytes: int = 20 * 2**20
    max_image_bytes: int = 10 * 2**20
    max_image_pixels: int = 40_000_000

    def to_json(self) -> dict:
        return {"max_body_mb": self.max_body_bytes / 2**20, "max_image_mb": self.max_image_bytes / 2**20,
                "max_image_megapixels": self.max_image_pixels / 1e6}


def _content_parts(content: Any) -> list[tuple[str, str]]:
    """[("text", t) | ("image", url)] of one message's content."""
    if content is None:
        return []
    if isinstance(content, str):
        return [("text", content)]
    if not isinstance(content, list):
        raise BadRequest(f"message content must be a string or a list of parts, got {type(content).__name__}")
    parts = []
    for i, p in enumerate(content):
        if not isinstance(p, dict):
            raise BadRequest(f"content part {i} must be an object with a type, got {type(p).__name__}")
        kind = p.get("type")
        if kind == "text":
            text = p.get("text", "")
            if not isinstance(text, str):
                raise BadRequest(f"content part {i}: text must be a string")
            parts.append(("text", text))
        elif kind == "image_url":
            iu = p.get("image_url")
            url = iu.get("url") if isinstance(iu, dict) else iu
            if not url or not isinstance(url, str):
                raise BadRequest(f"content part {i}: image_url part without url")
            parts.append(("image", url))
        else:
            raise BadRequest(f"unsupported content part type {kind!r} (expected text or image_url)")
    return parts


def _steps(parts: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """Runs of images each closed by a text: [(images, text)]. Trailing images get an empty text."""
    steps, imgs, texts = [], [], []
    for kind, val in parts:
        if kind == "image":
            if texts:
                steps.append((imgs, "".join(texts)))
                imgs, texts = [], []
            imgs.append(val)
        else:
            texts.append(val)
    if imgs or texts:
        steps.append((imgs, "".join(texts)))
    return steps


def save_data_url(url: str, folder: Path, limits: ServeLimits | None = None) -> str:
    """Write a base64 data-URL image into `folder` after checking its size and its pixel count
    (from the header: a small file can declare a huge image)."""
    limits = limits or ServeLimits()
    if not url.startswith("data:"):
        raise BadRequest("images must be base64 data URLs (this server fetches nothing)", code="invalid_image")
    head, _, payload = url.partition(",")
    mime = head[5:].split(";")[0].lower()
    if ";base64" not in head:
        raise BadRequest("image data URL must be base64-encoded", code="invalid_image")
    if len(payload) * 3 // 4 > limits.max_image_bytes + 2:
        raise TooLarge(f"image of {len(payload) * 3 / 4 / 2**20:.1f} MB is over this server's limit of "
                       f"{limits.max_image_bytes / 2**20:g} MB per image (--max-image-mb)", code="image_too_large")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image data URL is not valid base64", code="invalid_image") from None
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:  # reads the header only
                w, h = im.size
    except Image.DecompressionBombError:  # PIL's own ceiling, far above any sensible limit
        raise TooLarge(f"image of over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels is over this server's "
                       f"limit of {limits.max_image_pixels / 1e6:g} megapixels (--max-image-megapixels)",
                       code="image_too_large") from None
    except Exception as e:  # noqa: BLE001 - PIL raises several types for a bad header
        raise BadRequest(f"image is not a readable image file ({type(e).__name__}: {e})",
                         code="invalid_image") from None
    if w * h > limits.max_image_pixels:
        raise TooLarge(f"image of {w}x{h} = {w * h / 1e6:.1f} megapixels is over this server's limit of "
                       f"{limits.max_image_pixels / 1e6:g} megapixels (--max-image-megapixels)", code="image_too_large")
    path = folder / f"{uuid.uuid4().hex}{_EXT.get(mime, '.img')}"
    path.write_bytes(raw)
    return str(path)


def messages_to_request(messages: list[dict], folder: Path, *, max_new_tokens: int | None, rid: str,
                        limits: ServeLimits | None = None) -> Request:
    """Invert prompt.build_conversation + openai_messages (see the module docstring)."""
    if not isinstance(messages, list):
        raise BadRequest(f"messages must be a list, got {type(messages).__name__}")
    if not messages:
        raise BadRequest("messages is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise BadRequest(f"message {i} must be an object with role system, user or assistant")
    msgs = [m for m in messages if m.get("role") != "system"]  # the adapter has its own system prompt
    if not msgs or msgs[-1].get("role") != "user":
        raise BadRequest("the last message must be a user message")
    history: list[HistoryEntry] = []

    def paths(urls):
        return tuple(save_data_url(u, folder, limits) for u in urls)

    k = 0
    while k < len(msgs) - 1:
        m = msgs[k]
        if m.get("role") != "user":
            raise BadRequest(f"message {k}: expected a user message, got {m.get('role')!r}")
        steps = _steps(_content_parts(m.get("content")))
        nxt = msgs[k + 1]
        answered = nxt.get("role") == "assistant"
        snippet_steps = steps[:-1] if answered and steps else steps
        for imgs, text in snippet_steps:
            history.append(HistoryEntry(images=paths(imgs), text=text, kind="snippet"))
        if answered:
            imgs, q = steps[-1] if steps else ([], "")
            answer = "".join(v for _, v in _content_parts(nxt.get("content")))
            history.append(HistoryEntry(images=paths(imgs), text=answer, kind="turn", query=q))
            k += 2
        else:
            k += 1
    steps = _steps(_content_parts(msgs[-1].get("content")))
    if not steps:
        raise BadRequest("the last user message is empty")
    for imgs, text in steps[:-1]:
        history.append(HistoryEntry(images=paths(imgs), text=text, kind="snippet"))
    imgs, query = steps[-1]
    return Request(id=rid, images=paths(imgs), query=query, history=tuple(history), max_new_tokens=max_new_tokens)


def parse_body(raw: bytes, folder: Path, *, rid: str, limits: ServeLimits) -> tuple[dict, Request]:
    """(body, Request) of a chat-completions body; BadRequest (400/413) for anything malformed."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    if body.get("stream"):
        raise BadRequest("stream=true is not supported")
    max_new = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1):
        raise BadRequest(f"max_tokens / max_completion_tokens must be a positive integer, got {max_new!r}")
    req = messages_to_request(body.get("messages"), folder, max_new_tokens=max_new, rid=rid, limits=limits)
    return body, req


class Batcher:
    """Collects concurrent requests into adapter batches on one worker thread (adapters are not
    thread-safe; batching is where their speed comes from). A request whose future was cancelled
    (its client has gone) before its batch starts is dropped; a batch the adapter raises on is
    re-run one request at a time, so one bad request never fails its neighbours."""

    def __init__(self, adapter: Adapter, max_batch: int = 8, wait_s: float = 0.005):
        self.adapter, self.max_batch, self.wait_s = adapter, max(1, max_batch), wait_s
        self.stats = {"received": 0, "computed": 0, "dropped": 0, "batches": 0}
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgevlm-batcher", daemon=True)
        self._thread.start()

    def submit(self, req: Request) -> Future:
        fut: Future = Future()
        self.stats["received"] += 1
        self._q.put((req, fut, time.perf_counter()))
        return fut

    def _generate(self, reqs: list[Request]) -> list[Reply]:
        try:
            replies = self.adapter.generate(reqs)
            if len(replies) != len(reqs) or not all(isinstance(r, Reply) for r in replies):
                raise RuntimeError(f"adapter returned {len(replies)} replies for {len(reqs)} requests")
            return list(replies)
        except Exception as e:  # noqa: BLE001 - a failing batch fails no neighbour
            if len(reqs) == 1:
                log.exception("adapter failed on request %s", reqs[0].id)
                return [Reply.invalid(f"adapter error: {type(e).__name__}: {e}")]
            log.warning("adapter failed on a batch of %d (%s: %s); running them one by one", len(reqs),
                        type(e).__name__, e)
            return [self._generate([r])[0] for r in reqs]

    def _run(self):
        while not self._stop.is_set():
            try:
                first = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            items = [first]
            deadline = time.perf_counter() + self.wait_s
            while len(items) < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    items.append(self._q.get(timeout=max(0.0, left)) if left > 0 else self._q.get_nowait())
                except queue.Empty:
                    break
            # From here a request runs: its client can no longer withdraw it.
            live = [it for it in items if it[1].set_running_or_notify_cancel()]
            self.stats["dropped"] += len(items) - len(live)
            if not live:
                continue
            self.stats["computed"] += len(live)
            self.stats["batches"] += 1
            start = time.perf_counter()
            replies = self._generate([r for r, _, _ in live])
            for (req, fut, t_in), rep in zip(live, replies):
                rep.timings["queue"] = start - t_in
                fut.set_result(rep)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)


def create_app(adapter: Adapter, *, model_name: str | None = None, max_batch: int = 8, batch_wait_ms: float = 5.0,
               api_key: str | None = None, request_timeout_s: float = 600.0, limits: ServeLimits | None = None,
               disconnect_poll_s: float = 0.05):
    """The FastAPI app serving `adapter`. `api_key`: when set, requests need `Authorization: Bearer <key>`.
    `request_timeout_s`: the longest a request waits for its reply (then 504, and dropped if not started)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    name = model_name or getattr(adapter, "name", "model")
    limits = limits or ServeLimits()
    batcher = Batcher(adapter, max_batch=max_batch, wait_s=batch_wait_ms / 1000.0)
    app = FastAPI(title="edgevlm-eval serve")
    app.state.batcher = batcher
    app.state.adapter = adapter
    app.state.limits = limits
    app.state.stats = {"rejected": 0, "gone": 0, "timed_out": 0}

    def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": code}})

    def authorised(request: HTTPRequest) -> bool:
        if not api_key:
            return True
        return request.headers.get("authorization", "") == f"Bearer {api_key}"

    @app.get("/health")
    def health():
        return {"status": "ok", "model": name, "requests": {**batcher.stats, **app.state.stats},
                "limits": limits.to_json()}

    @app.get("/v1/models")
    def models(request: HTTPRequest):
        if not authorised(request):
            return error(401, "invalid API key", "authentication_error")
        caps = adapter.capabilities.to_json()
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "edgevlm-eval",
                                             "capabilities": caps}]}

    def too_large(n: int | None):
        app.state.stats["rejected"] += 1
        size = f"a body of {n / 2**20:.1f} MB" if n is not None else "the body"
        return error(413, f"{size} is over this server's limit of {limits.max_body_bytes / 2**20:g} MB "
                          "(--max-body-mb)", code="request_too_large")

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest):
        if not authorised(request):
            return error(401, "invalid API key", "authentication_error")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return too_large(int(declared))  # refused before reading it
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > limits.max_body_bytes:
                return too_large(None)
            chunks.append(chunk)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        folder = Path(tempfile.mkdtemp(prefix="edgevlm-serve-"))
        try:
            # Off the event loop: JSON, base64 and image headers of a large body take a while.
            body, req = await run_in_threadpool(parse_body, b"".join(chunks), folder, rid=rid, limits=limits)
        except BadRequest as e:
            shutil.rmtree(folder, ignore_errors=True)
            app.state.stats["rejected"] += 1
            return error(e.status, str(e), code=e.code)
        fut = batcher.submit(req)
        # Registered before the asyncio wrapper: the images are gone by the time the reply is sent.
        fut.add_done_callback(lambda _f: shutil.rmtree(folder, ignore_errors=True))
        waiter = asyncio.wrap_future(fut)
        deadline = time.perf_counter() + request_timeout_s
        while not fut.done():
            await asyncio.wait({waiter}, timeout=disconnect_poll_s)
            if fut.done():
                break
            if await request.is_disconnected():
                fut.cancel()  # dropped if its batch has not started; nobody reads the reply otherwise
                app.state.stats["gone"] += 1
                return error(499, "client closed the request")
            if time.perf_counter() > deadline:
                fut.cancel()
                app.state.stats["timed_out"] += 1
                return error(504, f"no reply within {request_timeout_s:g} s", "server_error")
        if fut.cancelled():
            return error(503, "request cancelled", "server_error")
        rep = fut.result()
        if not rep.ok:
            if rep.error_kind == "input":  # this request's image: not the server's fault, do not retry
                return error(400, rep.error or "unusable input", code="invalid_image")
            return error(500, rep.error or "invalid reply", "server_error")
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": rep.raw_text or rep.text},
                                  "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs") and rep.token_probs is not None:
            import math

            choice["logprobs"] = {"content": [{"token": "", "logprob": math.log(max(p, 1e-45)), "bytes": None,
                                               "top_logprobs": []} for p in rep.token_probs]}
        usage = {"prompt_tokens": rep.prompt_tokens or 0, "completion_tokens": rep.completion_tokens or 0,
                 "total_tokens": (rep.prompt_tokens or 0) + (rep.completion_tokens or 0)}
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": name,
                "choices": [choice], "usage": usage,
                "edgevlm": {"timings": rep.timings, "visual_tokens": rep.visual_tokens,
                            "visual_tokens_kept": rep.visual_tokens_kept}}

    return app


@contextlib.contextmanager
def run_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn on a background thread; yields the base URL (".../v1"). Port 0
    picks a free port. Stops the server on exit."""
    import uvicorn

    # A short graceful shutdown: a hung request must not hold the caller (tests of timeouts).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="edgevlm-uvicorn", daemon=True)
    thread.start()
    t0 = time.time()
    while not server.started:
        if not thread.is_alive() or time.time() - t0 > 20:
            raise RuntimeError(f"server on {host}:{port} did not start")
        time.sleep(0.01)
    real_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{real_port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        batcher = getattr(getattr(app, "state", None), "batcher", None)
        if batcher is not None:
            batcher.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="registry name or adapter:path-or-hub-id[?key=value&...] (see `edgevlm-eval models`)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--served-name", default=None, help="model name the endpoint reports (default: the entry's)")
    parser.add_argument("--max-batch", type=int, default=8, help="most requests run together (default 8)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0,
                        help="how long a request waits for others to batch with (default 5 ms)")
    parser.add_argument("--api-key-env", default=None,
                        help="environment variable holding a key clients must send (default: no auth)")
    d = ServeLimits()
    parser.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20,
                        help=f"largest request body (default {d.max_body_bytes / 2**20:g} MB; larger: 413)")
    parser.add_argument("--max-image-mb", type=float, default=d.max_image_bytes / 2**20,
                        help=f"largest image file in a request (default {d.max_image_bytes / 2**20:g} MB)")
    parser.add_argument("--max-image-megapixels", type=float, default=d.max_image_pixels / 1e6,
                        help=f"largest image, read from its header before decoding (default "
                             f"{d.max_image_pixels / 1e6:g} megapixels)")
    parser.add_argument("--request-timeout-s", type=float, default=600.0,
                        help="longest a request waits for its reply (default 600 s; then 504)")
    parser.add_argument("--models-dir", dest="models_dir", action="append", default=[], metavar="D",
                        help="extra folder of user models.yaml files (repeatable; also $EDGEVLM_MODELS_PATH)")


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from edgevlm_eval.core.errors import ConfigError

    from .registry import load_adapter, set_models_path

    set_models_path(getattr(args, "models_dir", None) or [])
    if getattr(args, "api_key_env", None) and not os.environ.get(args.api_key_env):
        raise ConfigError(f"--api-key-env {args.api_key_env}: the variable is not set", key="api_key_env")
    key = os.environ.get(args.api_key_env) if getattr(args, "api_key_env", None) else None
    adapter = load_adapter(args.model)
    if adapter.capabilities.token_focus is False and getattr(adapter, "base_url", None):
        log.warning("serving an HTTP adapter: requests will be forwarded to %s", adapter.base_url)
    limits = ServeLimits(max_body_bytes=int(args.max_body_mb * 2**20), max_image_bytes=int(args.max_image_mb * 2**20),
                         max_image_pixels=int(args.max_image_megapixels * 1e6))
    app = create_app(adapter, model_name=args.served_name or getattr(adapter, "name", args.model),
                     max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, api_key=key,
                     request_timeout_s=args.request_timeout_s, limits=limits)
    print(f"serving {args.model} on http://{args.host}:{args.port}/v1 (OpenAI-compatible chat completions)")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        app.state.batcher.close()
        adapter.close()
    return 0
