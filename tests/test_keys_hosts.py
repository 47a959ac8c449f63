"""Keys go only where their entry says they belong: a listener on 127.0.0.1 records the
Authorization header each spec sends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import Request as HTTPRequest
from PIL import Image

from edgevlm_eval.core.types import Request
from edgevlm_eval.model_adapters.registry import load_adapter, resolve
from edgevlm_eval.model_adapters.serve import run_in_thread

OPENAI_KEY = "sk-openai-SECRET-111"
DASH_KEY = "sk-dash-SECRET-222"
MINE = "sk-mine-SECRET-333"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("k") / "a.png"
    Image.fromarray(np.full((32, 48, 3), 90, dtype=np.uint8)).save(p)
    return str(p)


@pytest.fixture
def listener():
    from fastapi import FastAPI

    app = FastAPI()
    heard: list[str | None] = []

    @app.post("/v1/chat/completions")
    async def chat(request: HTTPRequest):
        heard.append(request.headers.get("authorization"))
        return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}

    with run_in_thread(app) as url:
        yield url, heard


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("DASHSCOPE_API_KEY", DASH_KEY)
    monkeypatch.setenv("MINICPM_API_KEY", MINE)
    monkeypatch.setenv("EDGEVLM_MY_KEY", MINE)
    monkeypatch.delenv("MINICPM_BASE_URL", raising=False)


def _heard(spec, image, heard, **overrides):
    a = load_adapter(spec, **overrides)
    try:
        rep = a.generate([Request(id="k", images=(image,), query="q")])[0]
        text = repr(a) + json.dumps(a.describe()) + json.dumps(resolve(spec.split("?")[0]).to_json())
    finally:
        a.close()
    assert rep.ok, rep.error
    assert not any(k in text for k in (OPENAI_KEY, DASH_KEY, MINE))  # never in describe / repr / entries
    return heard.pop()


def test_no_key_unless_the_entry_or_spec_names_one(listener, image):
    url, heard = listener
    # the generic entry names no key, although $OPENAI_API_KEY is set
    assert _heard(f"openai-compatible?model=m&base_url={url}", image, heard) == "Bearer EMPTY"
    # an entry's default key does not follow base_url to another host
    assert _heard(f"gpt-4o?base_url={url}", image, heard) == "Bearer EMPTY"
    assert _heard(f"qwen2.5-vl-72b-api?base_url={url}", image, heard) == "Bearer EMPTY"  # and needs none there
    assert _heard("gpt-4o", image, heard, base_url=url) == "Bearer EMPTY"  # an override is a move too
    assert _heard(f"minicpm-o?base_url={url}", image, heard) == "Bearer EMPTY"
    assert _heard(f"openai:gpt-4o-mini?base_url={url}", image, heard) == "Bearer EMPTY"


def test_the_named_key_only(listener, image):
    url, heard = listener
    assert _heard(f"gpt-4o?base_url={url}&api_key_env=OPENAI_API_KEY", image, heard) == f"Bearer {OPENAI_KEY}"
    assert _heard(f"openai-compatible?model=m&base_url={url}&api_key_env=EDGEVLM_MY_KEY", image, heard) \
        == f"Bearer {MINE}"
    assert _heard(f"gpt-4o?base_url={url}&api_key_env=EDGEVLM_MY_KEY", image, heard) == f"Bearer {MINE}"
    assert _heard("gpt-4o", image, heard, base_url=url, api_key_env="EDGEVLM_MY_KEY") == f"Bearer {MINE}"


def test_an_entry_keeps_its_key_on_its_own_host(listener, image, monkeypatch):
    url, heard = listener
    # minicpm-o's host comes from $MINICPM_BASE_URL by design, with its own key
    monkeypatch.setenv("MINICPM_BASE_URL", url)
    assert _heard("minicpm-o", image, heard) == f"Bearer {MINE}"
    # the same host (scheme, host, port) as the entry's is its own host
    e = resolve("gpt-4o?base_url=https://api.openai.com:443/v1")
    assert e.options["api_key_env"] == "OPENAI_API_KEY" and e.options["require_key"] is True
    moved = resolve(f"gpt-4o?base_url={url}")
    assert moved.options["api_key_env"] is None and moved.options["require_key"] is False
    assert moved.options["key_withheld"] == "OPENAI_API_KEY"


def test_the_client_never_falls_back_to_environment_urls(monkeypatch, listener):
    url, _ = listener
    monkeypatch.setenv("OPENAI_BASE_URL", url)  # would make the openai client send gpt-4o's key here
    a = load_adapter("gpt-4o")
    try:
        assert str(a._client.base_url).startswith("https://api.openai.com/v1")
    finally:
        a.close()


def test_withheld_key_is_explained_on_401(image, monkeypatch):
    from edgevlm_eval.core.types import Reply
    from edgevlm_eval.model_adapters.base import Adapter
    from edgevlm_eval.model_adapters.serve import create_app

    class Fixed(Adapter):
        def generate(self, requests):
            return [Reply(text="x") for _ in requests]

    with run_in_thread(create_app(Fixed(), api_key="server-key")) as url:
        a = load_adapter(f"gpt-4o?base_url={url}&max_retries=0")
        try:
            rep = a.generate([Request(id="k", images=(image,), query="q")])[0]
        finally:
            a.close()
    assert rep.error_kind == "fatal" and rep.error.startswith("HTTP 401 authentication failed")
    assert "$OPENAI_API_KEY" in rep.error and "api_key_env=OPENAI_API_KEY" in rep.error
    assert OPENAI_KEY not in rep.error


def test_credentials_in_a_base_url_stay_out_of_describe():
    a = load_adapter("openai-compatible?model=m&base_url=https://user:pa55word@example.invalid/v1?token=t0k")
    try:
        text = repr(a) + json.dumps(a.describe())
    finally:
        a.close()
    assert "pa55word" not in text and "t0k" not in text and "https://example.invalid/v1" in text
