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
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

from fastapi import Request as HTTPRequest  # module level: FastAPI resolves the string annotations here

from edgevlm_eval.core.types import HistoryEntry, Reply, Request

from .base import Adapter

log = logging.getLogger(__name__)

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp"}


class BadRequest(ValueError):
    pass


def _content_parts(content: Any) -> list[tuple[str, str]]:
    """[("text", t) | ("image", url)] of one message's content."""
    if content is None:
        return []
    if isinstance(content, str):
        return [("text", content)]
    parts = []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            parts.append(("text", str(p.get("text", ""))))
        elif kind == "image_url":
            iu = p.get("image_url")
            url = iu.get("url") if isinstance(iu, dict) else iu
            if not url:
                raise BadRequest("image_url part without url")
            parts.append(("image", str(url)))
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


def save_data_url(url: str, folder: Path) -> str:
    if not url.startswith("data:"):
        raise BadRequest("images must be base64 data URLs (this server fetches nothing)")
    head, _, payload = url.partition(",")
    mime = head[5:].split(";")[0].lower()
    if ";base64" not in head:
        raise BadRequest("image data URL must be base64-encoded")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image data URL is not valid base64") from None
    path = folder / f"{uuid.uuid4().hex}{_EXT.get(mime, '.img')}"
    path.write_bytes(raw)
    return str(path)


def messages_to_request(messages: list[dict], folder: Path, *, max_new_tokens: int | None, rid: str) -> Request:
    """Invert prompt.build_conversation + openai_messages (see the module docstring)."""
    if not messages:
        raise BadRequest("messages is empty")
    msgs = [m for m in messages if m.get("role") != "system"]  # the adapter has its own system prompt
    if not msgs or msgs[-1].get("role") != "user":
        raise BadRequest("the last message must be a user message")
    history: list[HistoryEntry] = []

    def paths(urls):
        return tuple(save_data_url(u, folder) for u in urls)

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


class Batcher:
    """Collects concurrent requests into adapter batches on one worker thread (adapters are not
    thread-safe; batching is where their speed comes from)."""

    def __init__(self, adapter: Adapter, max_batch: int = 8, wait_s: float = 0.005):
        self.adapter, self.max_batch, self.wait_s = adapter, max(1, max_batch), wait_s
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgevlm-batcher", daemon=True)
        self._thread.start()

    def submit(self, req: Request) -> Future:
        fut: Future = Future()
        self._q.put((req, fut, time.perf_counter()))
        return fut

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
            start = time.perf_counter()
            try:
                replies = self.adapter.generate([r for r, _, _ in items])
            except Exception as e:  # noqa: BLE001 - a failing batch fails its requests, not the server
                log.exception("adapter failed")
                replies = [Reply.invalid(f"adapter error: {type(e).__name__}: {e}") for _ in items]
            for (req, fut, t_in), rep in zip(items, replies):
                rep.timings["queue"] = start - t_in
                fut.set_result(rep)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)


def create_app(adapter: Adapter, *, model_name: str | None = None, max_batch: int = 8, batch_wait_ms: float = 5.0,
               api_key: str | None = None, request_timeout_s: float = 600.0):
    """The FastAPI app serving `adapter`. `api_key`: when set, requests need `Authorization: Bearer <key>`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    name = model_name or getattr(adapter, "name", "model")
    batcher = Batcher(adapter, max_batch=max_batch, wait_s=batch_wait_ms / 1000.0)
    app = FastAPI(title="edgevlm-eval serve")
    app.state.batcher = batcher
    app.state.adapter = adapter

    def error(status: int, message: str, kind: str = "invalid_request_error"):
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})

    def authorised(request: HTTPRequest) -> bool:
        if not api_key:
            return True
        return request.headers.get("authorization", "") == f"Bearer {api_key}"

    @app.get("/health")
    def health():
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models(request: HTTPRequest):
        if not authorised(request):
            return error(401, "invalid API key", "authentication_error")
        caps = adapter.capabilities.to_json()
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "edgevlm-eval",
                                             "capabilities": caps}]}

    @app.post("/v1/chat/completions")
    def chat(body: dict, request: HTTPRequest):
        # A plain `def`: FastAPI runs it in its thread pool, so concurrent requests can meet in a batch.
        if not authorised(request):
            return error(401, "invalid API key", "authentication_error")
        if body.get("stream"):
            return error(400, "stream=true is not supported")
        max_new = body.get("max_completion_tokens") or body.get("max_tokens")
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        folder = Path(tempfile.mkdtemp(prefix="edgevlm-serve-"))
        try:
            try:
                req = messages_to_request(body.get("messages") or [], folder,
                                          max_new_tokens=int(max_new) if max_new else None, rid=rid)
            except BadRequest as e:
                return error(400, str(e))
            rep = batcher.submit(req).result(timeout=request_timeout_s)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if not rep.ok:
            status = 400 if rep.error and ("image" in rep.error) else 500
            return error(status, rep.error or "invalid reply", "server_error" if status == 500 else
                         "invalid_request_error")
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


def main(args: argparse.Namespace) -> int:
    import uvicorn

    from edgevlm_eval.core.errors import ConfigError

    from .registry import load_adapter

    if getattr(args, "api_key_env", None) and not os.environ.get(args.api_key_env):
        raise ConfigError(f"--api-key-env {args.api_key_env}: the variable is not set", key="api_key_env")
    key = os.environ.get(args.api_key_env) if getattr(args, "api_key_env", None) else None
    adapter = load_adapter(args.model)
    if adapter.capabilities.token_focus is False and getattr(adapter, "base_url", None):
        log.warning("serving an HTTP adapter: requests will be forwarded to %s", adapter.base_url)
    app = create_app(adapter, model_name=args.served_name or getattr(adapter, "name", args.model),
                     max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, api_key=key)
    print(f"serving {args.model} on http://{args.host}:{args.port}/v1 (OpenAI-compatible chat completions)")
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        app.state.batcher.close()
        adapter.close()
    return 0
