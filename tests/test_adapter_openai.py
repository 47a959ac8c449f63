"""The OpenAI-compatible adapter against `edgevlm-eval serve`-style servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from fastapi import Request as HTTPRequest
from PIL import Image

from edgevlm_eval.model_adapters.base import Adapter, Capabilities
from edgevlm_eval.model_adapters.registry import load_adapter
from edgevlm_eval.model_adapters.serve import create_app, run_in_thread
from edgevlm_eval.core.types import Box, HistoryEntry, Reply, Request

SNIPPET = "This is the image from 2 seconds ago; detected car, pedestrian."


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(1)
    paths = []
    for i, (w, h) in enumerate([(224, 224), (300, 200), (448, 224), (1600, 900)]):
        p = d / f"f{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    bad = d / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    return paths, str(bad)


def _requests(paths):
    return [
        Request(id="0", images=(paths[0],), query="Identify which object categories appear.",
                history=(HistoryEntry(images=(paths[1],), text=SNIPPET),)),
        Request(id="1", images=(paths[2], paths[0]), query="Which gesture?",
                history=(HistoryEntry(images=(paths[1],), text="pointing", kind="turn", query="Which gesture?"),)),
        Request(id="2", images=(paths[1],), query="What is the chef doing?"),
    ]


class StubAdapter(Adapter):
    """Answers with a fixed text, counting how many requests it holds at once."""

    name = "stub"
    capabilities = Capabilities()

    def __init__(self, text: str, delay: float = 0.0):
        self.text, self.delay = text, delay
        self.seen: list[Request] = []

    def generate(self, requests):
        self.seen.extend(requests)
        time.sleep(self.delay)
        return [Reply(text=self.text, raw_text=self.text, token_probs=[0.5, 0.25]) for _ in requests]


def test_round_trip_equals_local_adapter(frames):
    paths, _ = frames
    local = load_adapter("tiny-qwen2.5-vl", max_new_tokens=8)
    reqs = _requests(paths)
    direct = local.generate(reqs)
    with run_in_thread(create_app(local, model_name="tiny-qwen2.5-vl")) as url:
        client = load_adapter(f"openai-compatible?model=tiny-qwen2.5-vl&logprobs=true&max_new_tokens=8&base_url={url}")
        try:
            remote = client.generate(reqs)
        finally:
            client.close()
    for r, d in zip(remote, direct):
        assert r.ok, r.error
        assert r.text == d.text  # the server rebuilt exactly the same prompt (history kinds, image order)
        np.testing.assert_allclose(r.token_probs, d.token_probs, atol=1e-6)
        assert r.visual_tokens == d.visual_tokens and r.prompt_tokens == d.prompt_tokens
        assert r.timings["attempts"] == 1.0 and r.timings["upload_bytes"] > 0
        assert "server_prefill" in r.timings
        # the server's own time and queueing, for the trace's latency parts
        assert 0 < r.timings["inference"] == r.timings["server_total"] < r.timings["total"]
        assert r.timings["queue"] >= 0


def test_grounding_through_http_maps_to_original_pixels(frames):
    paths, _ = frames
    # 0-1000 coordinates of a 1600x900 frame
    stub = StubAdapter('<answer>car</answer>```json\n[{"bbox_2d": [250, 500, 500, 1000], "label": "car"}]\n```')
    with run_in_thread(create_app(stub)) as url:
        c = load_adapter(f"openai-compatible?model=stub&base_url={url}&grounding_coords=norm1000")
        try:
            rep = c.generate([Request(id="g", images=(paths[3],), query="Which objects?", grounding=True)])[0]
        finally:
            c.close()
    assert rep.ok and rep.text == "car" and rep.rois == [Box("car", 400, 450, 800, 900)]
    assert "bbox_2d" in rep.raw_text
    assert "bbox_2d" in stub.seen[0].query  # the grounding instruction travelled with the query


def test_fails_n_times_then_answers(frames):
    paths, _ = frames
    stub = StubAdapter("car")
    app = create_app(stub)
    calls = {"n": 0}

    @app.middleware("http")
    async def flaky(request, call_next):
        from fastapi.responses import JSONResponse

        if request.url.path.endswith("/chat/completions"):
            calls["n"] += 1
            if calls["n"] == 1:
                return JSONResponse(status_code=429, content={"error": {"message": "slow down"}},
                                    headers={"retry-after": "0.05"})
            if calls["n"] <= 3:
                return JSONResponse(status_code=503, content={"error": {"message": "overloaded"}})
        return await call_next(request)

    with run_in_thread(app) as url:
        c = load_adapter(f"openai-compatible?model=stub&base_url={url}&backoff=0.01&max_retries=3&logprobs=true")
        try:
            rep = c.generate([Request(id="f", images=(paths[0],), query="q")])[0]
            assert rep.ok and rep.text == "car" and rep.timings["attempts"] == 4.0
            assert rep.token_probs == pytest.approx([0.5, 0.25])
            calls["n"] = 0
            c.max_retries = 1  # fewer retries than failures: an invalid reply with the last reason
            rep2 = c.generate([Request(id="f2", images=(paths[0],), query="q")])[0]
        finally:
            c.close()
    assert not rep2.ok and "HTTP 503" in rep2.error and "2 attempt" in rep2.error and rep2.text == ""


def test_never_answers_times_out_to_invalid_reply(frames):
    from fastapi import FastAPI

    paths, _ = frames
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def hang(body: dict):
        await asyncio.sleep(30)
        return {}

    with run_in_thread(app) as url:
        c = load_adapter(f"openai-compatible?model=x&base_url={url}&timeout=0.3&max_retries=1&backoff=0.01")
        t0 = time.perf_counter()
        try:
            reps = c.generate([Request(id=str(i), images=(paths[0],), query="q") for i in range(2)])
        finally:
            c.close()
        elapsed = time.perf_counter() - t0
    assert all(not r.ok and r.error.startswith("timeout after 0.3s") and "2 attempt" in r.error for r in reps)
    assert elapsed < 5.0


def test_client_errors_are_not_retried_and_bad_images_never_sent(frames, monkeypatch):
    paths, bad = frames
    stub = StubAdapter("x")
    monkeypatch.setenv("EDGEVLM_TEST_KEY", "right-key")
    with run_in_thread(create_app(stub, api_key="right-key")) as url:
        wrong = load_adapter(f"openai-compatible?model=stub&base_url={url}&api_key_env=EDGEVLM_NO_SUCH_VAR")
        right = load_adapter(f"openai-compatible?model=stub&base_url={url}&api_key_env=EDGEVLM_TEST_KEY")
        try:
            r_wrong = wrong.generate([Request(id="a", images=(paths[0],), query="q")])[0]
            r_bad, r_ok = right.generate([Request(id="b", images=(bad,), query="q"),
                                          Request(id="c", images=(paths[0],), query="q")])
        finally:
            wrong.close()
            right.close()
    assert not r_wrong.ok and "HTTP 401" in r_wrong.error and r_wrong.timings["attempts"] == 1.0
    assert right._redact("bad key right-key given") == "bad key *** given"
    assert not r_bad.ok and "corrupt image" in r_bad.error
    assert r_ok.ok and len(stub.seen) == 1  # the corrupt one never reached the server
    assert "right-key" not in repr(right) and "right-key" not in str(right.describe())


def test_bounded_concurrency(frames):
    from fastapi import FastAPI

    paths, _ = frames
    app = FastAPI()
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    @app.post("/v1/chat/completions")
    async def slow(body: dict):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.05)
        with lock:
            state["now"] -= 1
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}

    with run_in_thread(app) as url:
        c = load_adapter(f"openai-compatible?model=m&base_url={url}&concurrency=2")
        try:
            reps = c.generate([Request(id=str(i), images=(paths[0],), query="q") for i in range(6)])
        finally:
            c.close()
    assert [r.text for r in reps] == ["ok"] * 6
    assert state["max"] == 2


def test_registry_api_entries_run_through_the_same_path(frames, monkeypatch):
    """gpt-4o and minicpm-o are exercised against a local server: same adapter code, other URL."""
    paths, _ = frames
    stub = StubAdapter("pedestrian")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    monkeypatch.setenv("MINICPM_API_KEY", "sk-local-test")
    with run_in_thread(create_app(stub, api_key="sk-local-test")) as url:
        monkeypatch.setenv("MINICPM_BASE_URL", url)
        for spec, kw in (("gpt-4o", {"base_url": url}), ("minicpm-o", {})):
            a = load_adapter(spec, **kw)
            try:
                rep = a.generate([Request(id=spec, images=(paths[0],), query="q")])[0]
            finally:
                a.close()
            assert rep.ok and rep.text == "pedestrian" and rep.token_probs == pytest.approx([0.5, 0.25])


def test_key_echoed_by_a_server_is_redacted(frames, monkeypatch, caplog):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    paths, _ = frames
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def echo_key(request: HTTPRequest):  # module-level import: FastAPI resolves string annotations there
        key = request.headers.get("authorization", "")
        return JSONResponse(status_code=503, content={"error": {"message": f"no capacity for {key}"}})

    monkeypatch.setenv("EDGEVLM_SECRET_KEY", "sk-very-secret-987")
    with run_in_thread(app) as url:
        c = load_adapter(f"openai-compatible?model=m&base_url={url}&api_key_env=EDGEVLM_SECRET_KEY"
                         "&max_retries=1&backoff=0.01")
        try:
            with caplog.at_level("DEBUG"):
                rep = c.generate([Request(id="k", images=(paths[0],), query="q")])[0]
        finally:
            c.close()
    assert not rep.ok and "HTTP 503" in rep.error and "Bearer ***" in rep.error
    assert "sk-very-secret-987" not in rep.error and "sk-very-secret-987" not in caplog.text
