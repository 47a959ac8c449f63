"""`edgevlm-eval serve`: message mapping, endpoints, errors, and the command itself."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from edgevlm_eval.model_adapters.base import Adapter, Capabilities
from edgevlm_eval.model_adapters.openai_compat import data_url, openai_messages
from edgevlm_eval.model_adapters.prompt import build_conversation
from edgevlm_eval.model_adapters.serve import (BadRequest, add_arguments, create_app, messages_to_request,
                                               run_in_thread)
from edgevlm_eval.core.types import HistoryEntry, Reply, Request

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    out = []
    for i, (w, h) in enumerate([(60, 40), (30, 30), (90, 45)]):
        p = d / f"i{i}.png"
        Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(p)
        out.append(str(p))
    return out


class Echo(Adapter):
    name = "echo"
    capabilities = Capabilities(logprobs=True)

    def __init__(self):
        self.seen = []

    def generate(self, requests):
        self.seen.extend(requests)
        return [Reply(text=f"{len(r.history)}|{len(r.images)}|{r.query}", raw_text=f"{len(r.history)}|{r.query}",
                      token_probs=[1.0], prompt_tokens=3, completion_tokens=1) if r.query != "fail"
                else Reply.invalid("generation failed: boom") for r in requests]


def test_messages_map_back_to_the_same_request(images, tmp_path):
    req = Request(id="r", images=(images[2], images[0]), query="Which gesture?", history=(
        HistoryEntry(images=(images[0],), text="This is the image from 2 seconds ago; detected car."),
        HistoryEntry(images=(images[1], images[2]), text="pointing", kind="turn", query="Which gesture?"),
        HistoryEntry(images=(images[1],), text="This is the image from 1 seconds ago; detected nothing."),
    ))
    conv = build_conversation(req, system=None)
    msgs = openai_messages(conv, [data_url(p)[0] for p in conv.images])
    back = messages_to_request(msgs, tmp_path, max_new_tokens=7, rid="x")
    assert back.query == req.query and back.max_new_tokens == 7 and len(back.images) == 2
    assert [(h.kind, h.text, h.query, len(h.images)) for h in back.history] == \
        [(h.kind, h.text, h.query, len(h.images)) for h in req.history]
    # images arrive byte for byte
    assert Path(back.history[1].images[1]).read_bytes() == Path(images[2]).read_bytes()
    assert build_conversation(back, system=None).messages[-1].parts[-1].value == "Which gesture?"


def test_bad_messages(tmp_path):
    with pytest.raises(BadRequest, match="data URLs"):
        messages_to_request([{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "http://example.com/a.png"}}, {"type": "text", "text": "q"}]}], tmp_path, max_new_tokens=None, rid="x")
    with pytest.raises(BadRequest, match="last message"):
        messages_to_request([{"role": "assistant", "content": "hi"}], tmp_path, max_new_tokens=None, rid="x")
    with pytest.raises(BadRequest, match="base64"):
        messages_to_request([{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64,@@@"}}]}], tmp_path, max_new_tokens=None, rid="x")


def test_endpoints(images):
    echo = Echo()
    with run_in_thread(create_app(echo, model_name="echo-model", api_key="k1")) as url:
        h = {"Authorization": "Bearer k1"}
        assert httpx.get(url + "/models").status_code == 401
        models = httpx.get(url + "/models", headers=h).json()
        assert models["data"][0]["id"] == "echo-model" and models["data"][0]["capabilities"]["logprobs"] is True
        body = {"model": "echo-model", "max_tokens": 5, "logprobs": True, "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(images[0])[0]}},
                                         {"type": "text", "text": "snippet"},
                                         {"type": "image_url", "image_url": {"url": data_url(images[1])[0]}},
                                         {"type": "text", "text": "query"}]}]}
        r = httpx.post(url + "/chat/completions", json=body, headers=h).json()
        assert r["choices"][0]["message"]["content"] == "1|query"  # raw text is what goes over the wire
        assert r["choices"][0]["logprobs"]["content"][0]["logprob"] == 0.0
        assert r["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        assert "queue" in r["edgevlm"]["timings"]
        assert echo.seen[0].max_new_tokens == 5
        bad = httpx.post(url + "/chat/completions", headers=h, json={"messages": [{"role": "user", "content": "fail"}]})
        assert bad.status_code == 500 and "boom" in bad.json()["error"]["message"]
        http_img = httpx.post(url + "/chat/completions", headers=h, json={"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}, {"type": "text", "text": "q"}]}]})
        assert http_img.status_code == 400
        # the temporary image files are removed after the request
        assert not any(os.path.exists(p) for r in echo.seen for p in r.images)


def test_add_arguments():
    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(["--model", "tiny-qwen2.5-vl", "--port", "9001"])
    assert (a.model, a.port, a.host, a.max_batch) == ("tiny-qwen2.5-vl", 9001, "127.0.0.1", 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_main_runs_a_tiny_model_over_http(images):
    port = _free_port()
    code = ("import argparse, sys; from edgevlm_eval.model_adapters import serve; p = argparse.ArgumentParser(); "
            "serve.add_arguments(p); sys.exit(serve.main(p.parse_args(sys.argv[1:])))")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", code, "--model", "tiny-qwen2.5-vl?max_new_tokens=4",
                             "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not come up: " + proc.stdout.read1().decode(errors="replace"))
        from edgevlm_eval.model_adapters.registry import load_adapter

        c = load_adapter(f"openai-compatible?model=tiny-qwen2.5-vl&base_url={base}/v1&max_new_tokens=4")
        try:
            rep = c.generate([Request(id="x", images=(images[0],), query="Identify objects.")])[0]
        finally:
            c.close()
        # 60x40 is below min_pixels 3136: scaled up by sqrt(3136/2400) and ceiled to 28 -> 84x56 = 3x2 cells
        assert rep.ok and rep.completion_tokens <= 4 and rep.visual_tokens == 6
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------ limits, malformed bodies, neighbours, gone clients

from edgevlm_eval.model_adapters.serve import ServeLimits  # noqa: E402


def _body(url_or_text, query="q"):
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url_or_text}},
                                                      {"type": "text", "text": query}]}]}


def _png_claiming(width: int, height: int) -> bytes:
    """A 4x4 PNG whose header claims width x height (the CRC fixed): tiny file, huge image."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    raw[ihdr + 8:ihdr + 16] = struct.pack(">II", width, height)
    raw[ihdr + 21:ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr + 4:ihdr + 21])))
    return bytes(raw)


def _data(raw: bytes, mime="image/png") -> str:
    import base64

    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def test_size_limits_answer_413_naming_the_limit(images):
    echo = Echo()
    limits = ServeLimits(max_body_bytes=64 * 1024, max_image_bytes=2000, max_image_pixels=1_000_000)
    big_file = np.random.default_rng(0).integers(0, 255, (60, 60, 3), dtype=np.uint8)
    import io

    buf = io.BytesIO()
    Image.fromarray(big_file).save(buf, format="PNG")  # ~10 KB of noise
    with run_in_thread(create_app(echo, limits=limits)) as url:
        r = httpx.post(url + "/chat/completions", json=_body("x" * 70_000))
        assert r.status_code == 413 and "0.0625 MB" in r.json()["error"]["message"] and "--max-body-mb" in \
            r.json()["error"]["message"]
        # no Content-Length (chunked): counted while reading
        chunked = httpx.post(url + "/chat/completions", content=iter([b"{" + b" " * 40_000] * 2),
                             headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        r = httpx.post(url + "/chat/completions", json=_body(_data(buf.getvalue())))
        assert r.status_code == 413 and "per image" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "image_too_large"
        # a few bytes declaring 15000x10000: refused from the header, never decoded
        bomb = _png_claiming(15000, 10000)
        assert len(bomb) < 300
        r = httpx.post(url + "/chat/completions", json=_body(_data(bomb)))
        assert r.status_code == 413 and "15000x10000 = 150.0 megapixels" in r.json()["error"]["message"]
        assert "limit of 1 megapixels" in r.json()["error"]["message"]
        # over PIL's own bomb ceiling
        r = httpx.post(url + "/chat/completions", json=_body(_data(_png_claiming(30000, 20000))))
        assert r.status_code == 413 and "limit of 1 megapixels" in r.json()["error"]["message"]
        ok = httpx.post(url + "/chat/completions", json=_body(data_url(images[0])[0]))
        assert ok.status_code == 200
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
    assert len(echo.seen) == 1  # only the acceptable request reached the adapter
    assert health["requests"]["rejected"] == 5 and health["limits"]["max_image_megapixels"] == 1


def test_default_pixel_limit_is_40_megapixels():
    from edgevlm_eval.model_adapters.serve import TooLarge, save_data_url

    with pytest.raises(TooLarge, match="48.0 megapixels"):
        save_data_url(_data(_png_claiming(8000, 6000)), Path("/nonexistent"))


@pytest.mark.parametrize("content,words", [
    (b"not json at all", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"messages": "hello"}', "messages must be a list"),
    (b'{"messages": ["hello"]}', "message 0 must be an object"),
    (b'{"messages": [{"role": "user", "content": 7}]}', "content must be a string or a list"),
    (b'{"messages": [{"role": "user", "content": ["x"]}]}', "content part 0 must be an object"),
    (b'{"messages": [{"role": "user", "content": [{"type": "audio"}]}]}', "unsupported content part"),
    (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}', "text must be a string"),
    (b'{"messages": [{"role": "user", "content": "q"}], "max_tokens": "many"}', "positive integer"),
    (b'{"messages": [{"role": "robot", "content": "q"}]}', "role system, user or assistant"),
    (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": '
     b'"data:image/png;base64,aGVsbG8gd29ybGQ="}}]}]}', "not a readable image"),
])
def test_malformed_bodies_are_400_never_500(content, words):
    echo = Echo()
    with run_in_thread(create_app(echo)) as url:
        r = httpx.post(url + "/chat/completions", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text
    assert echo.seen == []


class Picky(Adapter):
    """Raises on any batch holding a 'boom' query (as a model failing on one input fails its batch)."""

    name = "picky"
    capabilities = Capabilities()

    def __init__(self):
        self.batches = []

    def generate(self, requests):
        self.batches.append([r.query for r in requests])
        if any(r.query == "boom" for r in requests):
            raise RuntimeError("cannot do boom")
        return [Reply(text=r.query.upper()) for r in requests]


def test_a_failing_request_never_fails_its_batch_neighbours(images):
    from concurrent.futures import ThreadPoolExecutor

    picky = Picky()
    good = data_url(images[0])[0]
    bodies = [_body(good, "one"), _body(good, "boom"), _body(good, "two"),
              _body(_data(_png_claiming(9000, 9000)), "huge")]
    with run_in_thread(create_app(picky, batch_wait_ms=400, max_batch=8)) as url:
        with ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(lambda b: httpx.post(url + "/chat/completions", json=b, timeout=20), bodies))
    codes = [r.status_code for r in rs]
    assert codes == [200, 500, 200, 413]
    assert rs[0].json()["choices"][0]["message"]["content"] == "ONE" and "cannot do boom" in rs[1].text
    assert sorted(picky.batches[0]) == ["boom", "one", "two"]  # they did meet in one batch
    assert sorted(map(tuple, picky.batches[1:])) == [("boom",), ("one",), ("two",)]  # then one by one


class Slow(Adapter):
    name = "slow"
    capabilities = Capabilities()

    def __init__(self, delay: float):
        self.delay, self.computed = delay, 0

    def generate(self, requests):
        self.computed += len(requests)
        time.sleep(self.delay)
        return [Reply(text="late") for _ in requests]


def test_requests_whose_clients_gave_up_are_not_computed(images):
    from concurrent.futures import ThreadPoolExecutor

    slow = Slow(0.4)
    body = _body(data_url(images[0])[0])
    app = create_app(slow, max_batch=1, batch_wait_ms=0)
    sent = 6

    def ask(_):
        try:
            return httpx.post(url + "/chat/completions", json=body, timeout=0.25).status_code
        except httpx.TimeoutException:
            return "gave up"

    with run_in_thread(app) as url:
        with ThreadPoolExecutor(sent) as pool:
            outcome = list(pool.map(ask, range(sent)))
        time.sleep(1.2)  # whatever was started finishes; the rest must have been dropped
        stats = httpx.get(url.removesuffix("/v1") + "/health").json()["requests"]
    assert outcome.count("gave up") == sent
    assert slow.computed == stats["computed"] < sent
    assert stats["dropped"] >= sent - 2 and stats["computed"] + stats["dropped"] == sent
    assert stats["gone"] == sent


def test_openai_client_timeouts_do_not_pile_up_work(images):
    """The recorder's situation: a client that times out and retries must not make the server
    compute every abandoned attempt (before: 75 computed for 24 frames)."""
    from edgevlm_eval.model_adapters.registry import load_adapter

    slow = Slow(0.3)
    with run_in_thread(create_app(slow, max_batch=1, batch_wait_ms=0)) as url:
        c = load_adapter(f"openai-compatible?model=slow&base_url={url}&timeout=0.2&max_retries=2&backoff=0.01"
                         "&concurrency=4")
        try:
            reps = c.generate([Request(id=str(i), images=(images[0],), query="q") for i in range(4)])
        finally:
            c.close()
        time.sleep(1.0)
        stats = httpx.get(url.removesuffix("/v1") + "/health").json()["requests"]
    assert all(not r.ok and r.error_kind == "transient" for r in reps)
    assert stats["received"] == 12 and stats["computed"] < 6 and stats["dropped"] >= 6


def test_a_request_waiting_past_the_server_timeout_gets_504(images):
    slow = Slow(0.6)
    body = _body(data_url(images[0])[0])
    with run_in_thread(create_app(slow, max_batch=1, batch_wait_ms=0, request_timeout_s=0.2)) as url:
        r = httpx.post(url + "/chat/completions", json=body, timeout=10)
        time.sleep(0.6)
        stats = httpx.get(url.removesuffix("/v1") + "/health").json()["requests"]
    assert r.status_code == 504 and "no reply within 0.2 s" in r.json()["error"]["message"]
    assert stats["timed_out"] == 1 and stats["received"] == 1
