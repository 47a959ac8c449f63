"""The model registry and spec syntax."""

from __future__ import annotations

import pytest

from edgevlm_eval.core.errors import ConfigError, UnknownNameError
from edgevlm_eval.model_adapters.registry import list_models, load_adapter, resolve

EXPECTED = {"qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen2.5-vl-72b", "qwen2.5-vl-72b-api", "vlm-r1", "vlm-r1-rec",
            "minicpm-o", "gpt-4o", "openai-compatible", "tiny-qwen2.5-vl", "tiny-vlm-r1", "tiny-hf",
            "demo-svlm", "demo-lvlm"}


def test_entries_and_capabilities_without_loading():
    entries = {e.name: e for e in list_models()}
    assert EXPECTED <= set(entries)
    q3 = entries["qwen2.5-vl-3b"]
    assert q3.checkpoint == "Qwen/Qwen2.5-VL-3B-Instruct" and q3.adapter == "qwen2_5_vl"
    assert (q3.options["min_pixels"], q3.options["max_pixels"]) == (3136, 12845056)
    assert entries["qwen2.5-vl-72b"].options["device_map"] == "auto"
    assert q3.capabilities.token_focus and q3.capabilities.logprobs
    assert entries["vlm-r1"].options["prompt_style"] == "r1"
    for api in ("gpt-4o", "minicpm-o", "openai-compatible", "qwen2.5-vl-72b-api"):
        assert entries[api].capabilities.token_focus is False  # visual tokens out of reach over HTTP
    assert entries["gpt-4o"].capabilities.logprobs is True
    assert entries["tiny-hf"].capabilities.token_focus is False
    js = q3.to_json()
    assert js["capabilities"]["token_focus"] is True and js["options"]["dtype"] == "bfloat16"


def test_spec_syntax():
    e = resolve("qwen2.5-vl-3b?dtype=float16&max_pixels=1003520&device_map=none")
    assert e.options["dtype"] == "float16" and e.options["max_pixels"] == 1003520 and e.options["device_map"] is None
    assert e.checkpoint == "Qwen/Qwen2.5-VL-3B-Instruct"
    p = resolve("qwen2_5_vl:/models/My-Qwen?max_new_tokens=32&do_sample=false")
    assert (p.adapter, p.checkpoint) == ("qwen2_5_vl", "/models/My-Qwen")
    assert p.options["max_new_tokens"] == 32 and p.options["do_sample"] is False
    assert "max_pixels" not in p.options  # a local checkpoint brings its own budget
    o = resolve("openai-compatible?model=Qwen/Qwen2.5-VL-72B-Instruct&base_url=http://10.0.0.1:8000/v1")
    assert o.checkpoint == "Qwen/Qwen2.5-VL-72B-Instruct" and "model" not in o.options
    assert o.options["base_url"] == "http://10.0.0.1:8000/v1"
    h = resolve("hf:HuggingFaceTB/SmolVLM-256M-Instruct?dtype=float32&grounding_coords=norm1")
    assert h.adapter == "hf" and h.options["grounding_coords"] == "norm1" and h.options["dtype"] == "float32"


def test_unknown_names_and_bad_specs():
    with pytest.raises(UnknownNameError) as ei:
        resolve("qwen2.5-vl-3B")
    assert ei.value.kind == "model" and ei.value.known[0] == "qwen2.5-vl-3b"
    with pytest.raises(UnknownNameError):
        resolve("llava:/x")
    with pytest.raises(ConfigError, match="no checkpoint"):
        resolve("qwen2_5_vl:")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        load_adapter("tiny-qwen2.5-vl?max_pixles=100")


def test_api_keys_only_from_env_and_never_shown(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        load_adapter("gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-123")
    a = load_adapter("gpt-4o")
    try:
        assert "SECRET" not in repr(a) and "SECRET" not in str(a.describe())
        assert a.describe()["options"]["api_key_env"] == "OPENAI_API_KEY"
    finally:
        a.close()


def test_minicpm_base_url_from_env(monkeypatch):
    monkeypatch.setenv("MINICPM_BASE_URL", "http://gpu-box:9000/v1")
    a = load_adapter("minicpm-o")
    try:
        assert a.base_url == "http://gpu-box:9000/v1" and a.model == "openbmb/MiniCPM-o-2_6"
        assert a.capabilities.token_focus is False
    finally:
        a.close()


def test_tiny_entries_load_and_run(tmp_path):
    import numpy as np
    from PIL import Image

    from edgevlm_eval.core.types import Request

    p = tmp_path / "a.png"
    Image.fromarray(np.full((56, 84, 3), 120, dtype=np.uint8)).save(p)
    r1 = load_adapter("tiny-vlm-r1", max_new_tokens=3)
    rep = r1.generate([Request(id="x", images=(str(p),), query="q")])[0]
    assert rep.ok and rep.completion_tokens <= 3 and rep.visual_tokens == 6  # 84x56 -> 3x2 cells
    # the R1 prompt asks for <think>/<answer>
    prep = r1.prepare([Request(id="x", images=(str(p),), query="q")])
    assert "<answer>" in r1.tokenizer.decode(prep.rows[0].ids)


def test_edge_latency_and_price_fields():
    entries = {e.name: e for e in list_models()}
    q3 = entries["qwen2.5-vl-3b"]
    assert q3.edge_latency_s == 0.5624 and "Table 3" in q3.edge_latency_basis and "562.40 ms" in q3.edge_latency_basis
    for tiny in ("tiny-qwen2.5-vl", "tiny-vlm-r1", "tiny-hf"):
        assert entries[tiny].edge_latency_s is not None and entries[tiny].edge_latency_basis == "tests: nominal"
    # the demo models declare a figure measured once on a stated reference machine (issue 10)
    assert entries["demo-svlm"].edge_latency_s == 0.031 and entries["demo-lvlm"].edge_latency_s == 0.115
    for demo in ("demo-svlm", "demo-lvlm"):
        basis = entries[demo].edge_latency_basis
        assert "EPYC" in basis and "measure_edge_latency.py" in basis
    for none in ("qwen2.5-vl-7b", "gpt-4o", "vlm-r1"):
        assert entries[none].edge_latency_s is None
    g = entries["gpt-4o"].to_json()
    assert g["price"]["input_usd_per_mtok"] == 2.5 and g["price"]["output_usd_per_mtok"] == 10.0
    assert "2025" in g["price"]["source"]
    assert q3.to_json()["price"] is None and q3.to_json()["edge_latency_s"] == 0.5624
    # options of a spec keep the entry's fields
    assert resolve("qwen2.5-vl-3b?dtype=float16").edge_latency_s == 0.5624


def test_usage_cost():
    from edgevlm_eval.model_adapters.base import Price
    from edgevlm_eval.model_adapters.registry import usage_cost

    assert usage_cost(Price(2.5, 10.0), 400_000, 20_000) == pytest.approx(1.0 + 0.2)
    assert usage_cost(resolve("gpt-4o"), None, 1_000_000) == pytest.approx(10.0)
    assert usage_cost(resolve("qwen2.5-vl-72b-api"), 10, 10) is None and usage_cost(None, 1, 1) is None


def test_capabilities_have_one_home():
    """The registry (no weights loaded) and the adapter classes give the same capabilities."""
    from edgevlm_eval.model_adapters.hf_generic import HFImageTextAdapter
    from edgevlm_eval.model_adapters.openai_compat import OpenAIAdapter
    from edgevlm_eval.model_adapters.qwen2_5_vl import QwenVLAdapter

    for name, cls in (("qwen2.5-vl-3b", QwenVLAdapter), ("tiny-hf", HFImageTextAdapter), ("gpt-4o", OpenAIAdapter),
                      ("openai-compatible", OpenAIAdapter)):
        e = resolve(name)
        assert cls.capabilities_for(e.options) == e.capabilities
    assert OpenAIAdapter.capabilities_for({"logprobs": True}).logprobs is True
    assert OpenAIAdapter.capabilities_for({}).logprobs is False
    a = load_adapter("openai-compatible?logprobs=true")
    try:
        assert a.capabilities == resolve("openai-compatible?logprobs=true").capabilities
    finally:
        a.close()


def test_pixel_budgets_have_one_home():
    from pathlib import Path

    from edgevlm_eval.model_adapters import kinds

    assert kinds.QWEN_PIXELS == {"min_pixels": 3136, "max_pixels": 12845056}
    assert kinds.TINY_PIXELS["max_pixels"] == 50176
    assert resolve("demo-svlm").options["max_pixels"] == 31360 and resolve("demo-lvlm").options["max_pixels"] == 112896
    folder = Path(kinds.__file__).parent
    for f in folder.glob("*.py"):
        if f.name != "kinds.py":
            text = f.read_text()
            assert "12845056" not in text and "3136" not in text, f.name


@pytest.mark.parametrize("spec_adapter", ["qwen2_5_vl", "hf"])
def test_checkpoint_folder_without_weights_is_a_config_error(tmp_path, spec_adapter, monkeypatch):
    import transformers

    def never(*a, **k):  # transformers must not be asked
        raise AssertionError("from_pretrained called")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", never, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError) as ei:
        load_adapter(f"{spec_adapter}:{empty}")
    msg = str(ei.value)
    assert str(empty) in msg and "config.json" in msg and "weight files" in msg and "found: nothing" in msg
    (empty / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as ei:
        load_adapter(f"{spec_adapter}:{empty}")
    assert "no weight files" in str(ei.value) and "no config.json" not in str(ei.value)
    (empty / "model.safetensors").write_bytes(b"")
    if spec_adapter == "qwen2_5_vl":
        with pytest.raises(ConfigError, match="no preprocessor_config.json, no tokenizer.json or vocab.json"):
            load_adapter(f"{spec_adapter}:{empty}")
    not_dir = tmp_path / "file.bin"
    not_dir.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_adapter(f"{spec_adapter}:{not_dir}")
