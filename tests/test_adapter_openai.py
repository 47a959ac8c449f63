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
        # the entry's own key goes to another host only when named explicitly (see test_keys_and_hosts)
        for spec, kw in (("gpt-4o", {"base_url": url, "api_key_env": "OPENAI_API_KEY"}), ("minicpm-o", {})):
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


# ------------------------------------------------------------------ failure kinds, API parameters, usage

def _completion(text, usage=(11, 3), finish="stop"):
    c = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]}
    if usage:
        c["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return c


def _scripted(script, seen):
    """A server answering the n-th call with script[n] (the last one repeats): (status, json[, headers])."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest):
        seen.append({"auth": request.headers.get("authorization"), "body": await request.json()})
        status, content, *headers = script[min(len(seen), len(script)) - 1]
        return JSONResponse(status_code=status, content=content, headers=headers[0] if headers else None)

    return app


def _err(message, code=None, param=None):
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": param}}


def _ask(url, paths, extra="", model="m", **req):
    c = load_adapter(f"openai-compatible?model={model}&base_url={url}&backoff=0.01&max_retries=2{extra}")
    try:
        return c.generate([Request(id="r", images=(paths[0],), query="q", **req)])[0], c.describe()
    finally:
        c.close()


@pytest.mark.parametrize("status,cause,kind", [
    (401, "authentication failed", "fatal"), (403, "permission denied", "fatal"), (404, "not found", "fatal"),
    (400, "bad request", "fatal"), (422, "bad request", "fatal"), (405, "bad request", "fatal"),
    (413, "request too large", "input"),
])
def test_client_errors_are_classified_and_not_retried(frames, status, cause, kind):
    from edgevlm_eval.model_adapters.openai_compat import failure_cause

    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(status, _err("nope"))], seen)) as url:
        rep, _ = _ask(url, paths)
    assert not rep.ok and rep.error_kind == kind and len(seen) == 1 and rep.timings["attempts"] == 1.0
    assert rep.error.startswith(f"HTTP {status} {cause}") and "nope" in rep.error
    assert failure_cause(rep.error) is not None


def test_fatal_messages_say_what_to_check(frames, monkeypatch):
    paths, _ = frames
    monkeypatch.setenv("EDGEVLM_T_KEY", "sk-never-shown-4242")
    seen = []
    with run_in_thread(_scripted([(401, _err("Incorrect API key provided: sk-never-shown-4242"))], seen)) as url:
        with_key, _ = _ask(url, paths, "&api_key_env=EDGEVLM_T_KEY")
        no_key, _ = _ask(url, paths)
    assert "check the key in $EDGEVLM_T_KEY" in with_key.error and "sk-never-shown-4242" not in with_key.error
    assert "***" in with_key.error  # the echoed key is redacted
    assert "no key was sent" in no_key.error and "api_key_env" in no_key.error
    seen = []
    with run_in_thread(_scripted([(404, _err("The model `gpt-9` does not exist"))], seen)) as url:
        rep, _ = _ask(url, paths, model="gpt-9")
    assert "no model 'gpt-9'" in rep.error and url in rep.error and "base_url" in rep.error


def test_an_image_the_server_refuses_is_an_input_error(frames):
    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(400, _err("You uploaded an unsupported image.", code="invalid_image_format"))],
                                 seen)) as url:
        rep, _ = _ask(url, paths)
    assert not rep.ok and rep.error_kind == "input" and "unusable image" in rep.error and len(seen) == 1


def test_unreadable_image_is_an_input_error_never_sent(frames):
    paths, bad = frames
    seen = []
    with run_in_thread(_scripted([(200, _completion("car"))], seen)) as url:
        c = load_adapter(f"openai-compatible?model=m&base_url={url}")
        try:
            rep = c.generate([Request(id="r", images=(bad,), query="q")])[0]
        finally:
            c.close()
    assert not rep.ok and rep.error_kind == "input" and rep.error.startswith("unusable image: corrupt image")
    assert seen == []


@pytest.mark.parametrize("bad_reply,words", [
    (_completion(None), "no content"), (_completion("   \n"), "empty text"),
    ({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}, "no choices"),
    (_completion("", finish="length"), "raise max_new_tokens"),
])
def test_empty_or_malformed_replies_are_retried_then_transient(frames, bad_reply, words):
    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(200, bad_reply), (200, _completion("truck"))], seen)) as url:
        good, _ = _ask(url, paths)  # the second attempt answers
        seen.clear()
    assert good.ok and good.text == "truck" and good.timings["attempts"] == 2.0
    with run_in_thread(_scripted([(200, bad_reply)], seen)) as url:
        bad, _ = _ask(url, paths)
    assert not bad.ok and bad.error_kind == "transient" and bad.error.startswith("unusable reply")
    assert words in bad.error and len(seen) == 3 and "3 attempt" in bad.error


def test_transient_failures_exhaust_their_retries(frames):
    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(502, _err("bad gateway"))], seen)) as url:
        rep, _ = _ask(url, paths)
    assert rep.error_kind == "transient" and rep.error.startswith("HTTP 502 server error") and len(seen) == 3
    seen = []
    with run_in_thread(_scripted([(429, _err("slow down"))], seen)) as url:
        rep, _ = _ask(url, paths)
    assert rep.error_kind == "transient" and rep.error.startswith("HTTP 429 rate limited") and len(seen) == 3


def test_retry_after_is_honoured_and_capped(frames):
    paths, _ = frames
    seen = []
    script = [(429, _err("wait"), {"retry-after": "0.4"}), (200, _completion("ok"))]
    with run_in_thread(_scripted(script, seen)) as url:
        t0 = time.perf_counter()
        rep, _ = _ask(url, paths)
        waited = time.perf_counter() - t0
        seen.clear()
        capped = [(429, _err("wait"), {"retry-after": "3600"}), (200, _completion("ok"))]
    assert rep.ok and 0.4 <= waited < 3.0
    with run_in_thread(_scripted(capped, seen)) as url:
        t0 = time.perf_counter()
        rep, _ = _ask(url, paths, "&retry_after_max=0.2")
        waited = time.perf_counter() - t0
    assert rep.ok and 0.2 <= waited < 3.0


def test_connection_refused_is_transient_after_retries(frames):
    import socket

    paths, _ = frames
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rep, _ = _ask(f"http://127.0.0.1:{port}/v1", paths)
    assert not rep.ok and rep.error_kind == "transient" and rep.timings["attempts"] == 3.0
    assert rep.error.startswith(f"connection failed to http://127.0.0.1:{port}/v1")


def test_usage_and_price_are_reported(frames, monkeypatch):
    from edgevlm_eval.model_adapters.registry import resolve, usage_cost

    paths, _ = frames
    seen = []
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    with run_in_thread(_scripted([(200, _completion("car", usage=(1200, 40)))], seen)) as url:
        c = load_adapter(f"gpt-4o?base_url={url}&api_key_env=OPENAI_API_KEY")
        try:
            rep = c.generate([Request(id="r", images=(paths[0],), query="q")])[0]
            info = c.describe()
        finally:
            c.close()
    assert (rep.prompt_tokens, rep.completion_tokens) == (1200, 40)
    assert info["price"]["input_usd_per_mtok"] == 2.5 and info["price"]["output_usd_per_mtok"] == 10.0
    assert usage_cost(resolve("gpt-4o"), 1_000_000, 100_000) == pytest.approx(2.5 + 1.0)
    assert usage_cost(resolve("openai-compatible"), 1_000_000, 100_000) is None


@pytest.mark.parametrize("model,param,temperature", [
    ("gpt-4o", "max_tokens", 0.0), ("gpt-4o-mini", "max_tokens", 0.0), ("o1", "max_completion_tokens", None),
    ("o3-mini", "max_completion_tokens", None), ("o4-mini", "max_completion_tokens", None),
    ("gpt-5", "max_completion_tokens", None), ("openai/gpt-5-mini", "max_completion_tokens", None),
])
def test_request_parameters_follow_the_model_family(frames, model, param, temperature):
    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(200, _completion("ok"))], seen)) as url:
        rep, info = _ask(url, paths, model=model, max_new_tokens=7)
    body = seen[0]["body"]
    other = "max_tokens" if param == "max_completion_tokens" else "max_completion_tokens"
    assert rep.ok and body[param] == 7 and other not in body
    assert body.get("temperature") == temperature and (("temperature" in body) == (temperature is not None))
    assert info["options"]["token_param"] == param


def test_explicit_parameter_options_win(frames):
    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(200, _completion("ok"))], seen)) as url:
        _ask(url, paths, "&token_param=max_completion_tokens&temperature=none", model="gpt-4o")
        _ask(url, paths, "&token_param=max_tokens&temperature=0.7", model="gpt-5")
    assert "max_completion_tokens" in seen[0]["body"] and "temperature" not in seen[0]["body"]
    assert "max_tokens" in seen[1]["body"] and seen[1]["body"]["temperature"] == 0.7


def test_unsupported_parameters_are_recovered_once_and_remembered(frames, caplog):
    """A server (here with OpenAI's own wording) refusing max_tokens, then temperature: the adapter
    switches, answers, and sends the right parameters from then on."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    paths, _ = frames
    app = FastAPI()
    bodies = []

    @app.post("/v1/chat/completions")
    async def strict(request: HTTPRequest):
        body = await request.json()
        bodies.append(body)
        if "max_tokens" in body:
            return JSONResponse(status_code=400, content=_err(
                "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
                "instead.", code="unsupported_parameter", param="max_tokens"))
        if "temperature" in body:
            return JSONResponse(status_code=400, content=_err(
                "Unsupported value: 'temperature' does not support 0.0 with this model. Only the default (1) value "
                "is supported.", code="unsupported_value", param="temperature"))
        return _completion("fine")

    with run_in_thread(app) as url:
        c = load_adapter(f"openai-compatible?model=future-model&base_url={url}&max_retries=0")
        try:
            with caplog.at_level("WARNING"):
                first = c.generate([Request(id="a", images=(paths[0],), query="q")])[0]
            n_first = len(bodies)
            second = c.generate([Request(id="b", images=(paths[0],), query="q")])[0]
            info = c.describe()
        finally:
            c.close()
    assert first.ok and first.text == "fine" and n_first == 3 and first.timings["attempts"] == 3.0
    assert second.ok and len(bodies) == 4  # remembered: one call
    assert "max_completion_tokens" in bodies[-1] and "temperature" not in bodies[-1]
    assert info["options"]["token_param"] == "max_completion_tokens" and info["options"]["temperature"] is None
    assert "max_completion_tokens from now on" in caplog.text


def test_a_400_that_is_not_about_parameters_is_not_recovered(frames):
    paths, _ = frames
    seen = []
    with run_in_thread(_scripted([(400, _err("max_tokens is too large: 100000", param="max_tokens"))], seen)) as url:
        rep, info = _ask(url, paths)
    assert rep.error_kind == "fatal" and len(seen) == 1 and info["options"]["token_param"] == "max_tokens"
