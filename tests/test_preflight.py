"""preflight(): one real request before anything is recorded; `edgevlm-eval models --check`."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from fastapi import Request as HTTPRequest
from PIL import Image

from edgevlm_eval.app.cli import main
from edgevlm_eval.core.errors import EdgeVLMError, ModelUnavailable
from edgevlm_eval.core.types import Reply, Request
from edgevlm_eval.model_adapters.base import Adapter, Capabilities
from edgevlm_eval.model_adapters.check import NEUTRAL_QUERY, preflight, probe_image
from edgevlm_eval.model_adapters.registry import load_adapter
from edgevlm_eval.model_adapters.serve import create_app, run_in_thread

SECRET = "sk-preflight-SECRET-77"


class Describer(Adapter):
    """Answers with what it was asked and the size of the image it got."""

    name = "describer"
    capabilities = Capabilities(logprobs=True)

    def __init__(self, text=None):
        self.text, self.seen = text, []

    def generate(self, requests):
        self.seen.extend(requests)
        out = []
        for r in requests:
            w, h = Image.open(r.images[-1]).size
            text = self.text if self.text is not None else f"a {w}x{h} picture ({r.query})"
            out.append(Reply(text=text, raw_text=text, prompt_tokens=21, completion_tokens=4))
        return out


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    p = tmp_path_factory.mktemp("pf") / "f.png"
    Image.fromarray(np.full((40, 60, 3), 30, dtype=np.uint8)).save(p)
    return Request(id="first", images=(str(p),), query="Which objects?")


def _failing(status, message="no", headers=None):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    app.state.calls = 0

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest):
        app.state.calls += 1
        return JSONResponse(status_code=status, content={"error": {"message": message}}, headers=headers)

    return app


def _preflight_refused(spec, frame) -> ModelUnavailable:
    a = load_adapter(spec)
    try:
        with pytest.raises(ModelUnavailable) as ei:
            preflight(a, frame, spec)
    finally:
        a.close()
    return ei.value


def _preflight_against(app, frame, extra=""):
    with run_in_thread(app) as url:
        spec = f"openai-compatible?model=stub-model&base_url={url}&max_retries=1&backoff=0.01{extra}"
        return _preflight_refused(spec, frame), url, spec


def test_usable_reply_is_returned(frame):
    d = Describer()
    with run_in_thread(create_app(d)) as url:
        spec = f"openai-compatible?model=describer&base_url={url}"
        a = load_adapter(spec)
        try:
            rep = preflight(a, frame, spec)
        finally:
            a.close()
    assert rep.ok and rep.text == "a 60x40 picture (Which objects?)" and rep.prompt_tokens == 21
    assert d.seen[0].query == "Which objects?"  # the real frame, not a probe


def test_auth_failure_names_cause_spec_and_env_var(frame, monkeypatch):
    monkeypatch.setenv("EDGEVLM_PF_KEY", SECRET)
    e, url, spec = _preflight_against(_failing(401, f"bad key {SECRET}"), frame, "&api_key_env=EDGEVLM_PF_KEY")
    msg = str(e)
    assert e.cause == "auth" and e.spec == spec and isinstance(e, EdgeVLMError)
    assert f"model '{spec}' is unavailable: HTTP 401 authentication failed" in msg
    assert "$EDGEVLM_PF_KEY (set)" in msg and SECRET not in msg and f"endpoint: {url}" in msg


def test_not_found_names_model_and_base_url(frame):
    e, url, _ = _preflight_against(_failing(404, "model stub-model does not exist"), frame)
    assert e.cause == "not_found" and "the model name 'stub-model'" in str(e) and f"base_url {url}" in str(e)


def test_permission_and_bad_request(frame):
    e, _, _ = _preflight_against(_failing(403, "not allowed"), frame)
    assert e.cause == "permission" and "may use model 'stub-model'" in str(e)
    e, _, _ = _preflight_against(_failing(400, "weird request"), frame)
    assert e.cause == "bad_request" and "token_param" in str(e)


def test_transient_failure_after_retries_stops_too(frame):
    app = _failing(503, "overloaded")
    e, _, _ = _preflight_against(app, frame)
    assert e.cause == "server" and "HTTP 503 server error" in str(e) and "2 attempt(s)" in str(e)
    assert "[transient]" in str(e) and app.state.calls == 2


def test_unreachable_endpoint(frame):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _preflight_refused(f"openai-compatible?model=m&base_url=http://127.0.0.1:{port}/v1&max_retries=0", frame)
    assert err.cause == "connection" and f"listening at the base_url http://127.0.0.1:{port}/v1" in str(err)


def test_unusable_replies(frame, tmp_path):
    with run_in_thread(create_app(Describer(text="  "))) as url:
        err = _preflight_refused(f"openai-compatible?model=d&base_url={url}&max_retries=0", frame)
    assert err.cause == "reply" and "unusable reply: empty text" in str(err)

    class Raises(Adapter):
        def generate(self, requests):
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(ModelUnavailable, match="adapter failed on its first request.*CUDA out of memory"):
        preflight(Raises(), frame, "local")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG nope")
    a = load_adapter("openai-compatible?model=m")
    try:
        with pytest.raises(ModelUnavailable) as ei:
            preflight(a, Request(id="b", images=(str(bad),), query="q"), "x")
    finally:
        a.close()
    assert ei.value.cause == "input" and "first frame" in str(ei.value)


def test_probe_image(tmp_path):
    im = Image.open(probe_image(tmp_path))
    assert im.size == (224, 168) and len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 3


def test_models_check_against_a_local_server(capsys, monkeypatch):
    d = Describer()
    monkeypatch.setenv("EDGEVLM_PF_KEY", SECRET)
    with run_in_thread(create_app(d, api_key=SECRET)) as url:
        spec = f"openai-compatible?model=describer&base_url={url}&api_key_env=EDGEVLM_PF_KEY"
        rc = main(["models", "--check", spec])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "reply:        'a 224x168 picture (" + NEUTRAL_QUERY + ")'" in out
    assert f"endpoint:     {url}" in out and "key:          $EDGEVLM_PF_KEY (set)" in out
    assert "usage:        21 prompt + 4 completion tokens" in out and "latency:" in out
    assert "capabilities: grounding, batched" in out and SECRET not in out


def test_models_check_fails_with_the_cause(capsys):
    with run_in_thread(_failing(401, "who are you")) as url:
        spec = f"openai-compatible?model=m&base_url={url}"
        rc = main(["models", "--check", spec])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"model '{spec}' is unavailable: HTTP 401 authentication failed" in err and "api_key_env" in err
