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
