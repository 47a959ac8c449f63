"""User models.yaml entries and third-party adapter classes, through the real CLI."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from edgevlm_eval.app.cli import main
from edgevlm_eval.core.errors import ConfigError, UnknownNameError
from edgevlm_eval.model_adapters import registry
from edgevlm_eval.model_adapters.registry import list_models, load_adapter, resolve, set_models_path

ADAPTER_SRC = '''
from PIL import Image

from edgevlm_eval.core.types import Reply
from edgevlm_eval.model_adapters.base import Adapter, Capabilities


class EchoAdapter(Adapter):
    """Says hello with the size of the current image and its checkpoint."""

    capabilities = Capabilities(grounding=False, max_images=2)

    @classmethod
    def capabilities_for(cls, options):
        return Capabilities(grounding=False, logprobs=bool(options.get("scores")), max_images=2)

    def __init__(self, checkpoint, *, name, greeting="hello", scores=False):
        self.name, self.checkpoint, self.greeting = name, checkpoint, greeting
        self.capabilities = self.capabilities_for({"scores": scores})

    def generate(self, requests):
        out = []
        for r in requests:
            w, h = Image.open(r.images[-1]).size
            out.append(Reply(text=f"{self.greeting} {w}x{h} from {self.checkpoint}", prompt_tokens=50,
                             completion_tokens=5))
        return out


class NotAnAdapter:
    pass
'''


@pytest.fixture(autouse=True)
def clean_path(monkeypatch):
    monkeypatch.delenv("EDGEVLM_MODELS_PATH", raising=False)
    yield
    set_models_path([])


def _write(folder, text, name="models.yaml"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder / name


@pytest.fixture
def user_dir(tmp_path):
    d = tmp_path / "my-models"
    (d / "plugins").mkdir(parents=True)
    (d / "plugins" / "echo_adapter.py").write_text(ADAPTER_SRC)
    _write(d, """
        models:
          - name: my-echo
            adapter: plugins/echo_adapter.py:EchoAdapter
            checkpoint: ckpt-7
            description: a user adapter from a file
            options: {greeting: hi, scores: true}
            edge_latency_s: 0.2
            edge_latency_basis: "tests: nominal"
            price: {input: 1.0, output: 2.0, source: "test figure"}
        """)
    return d


def test_user_entry_with_a_file_adapter_answers_through_the_cli(user_dir, capsys):
    rc = main(["models", "--models-dir", str(user_dir), "--check", "my-echo"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "reply:        'hi 224x168 from ckpt-7'" in out
    assert f"model:        my-echo ({user_dir / 'models.yaml'})" in out
    assert "capabilities: logprobs, batched" in out  # read from the class, for these options
    assert "edge latency: 0.2 s (tests: nominal)" in out
    assert "cost:         $0.000060" in out  # 50 * 1.0 / 1e6 + 5 * 2.0 / 1e6


def test_user_entries_are_listed_with_their_source(user_dir, capsys):
    assert main(["models", "--models-dir", str(user_dir), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    mine = rows["my-echo"]
    assert mine["source"] == str(user_dir / "models.yaml") and rows["gpt-4o"]["source"] == "built-in"
    assert mine["adapter"] == f"{user_dir / 'plugins' / 'echo_adapter.py'}:EchoAdapter"
    assert mine["capabilities"]["logprobs"] is True and mine["capabilities"]["max_images"] == 2
    assert mine["price"] == {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0, "source": "test figure"}
    assert (mine["edge_latency_s"], mine["edge_latency_basis"]) == (0.2, "tests: nominal")
    assert rows["qwen2.5-vl-3b"]["edge_latency_s"] == 0.5624
    # the table too, and the search path does not outlive the command
    assert main(["models", "--models-dir", str(user_dir)]) == 0
    assert "my-echo" in capsys.readouterr().out
    assert "my-echo" not in {e.name for e in list_models()}


def test_module_adapter_and_env_path(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "site" / "acme_vlm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "adapters.py").write_text(ADAPTER_SRC)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, """
        models:
          - {name: acme-echo, adapter: "acme_vlm.adapters:EchoAdapter", checkpoint: acme-1}
        """)
    _write(b, """
        models:
          - {name: acme-server, adapter: openai, checkpoint: served, options: {base_url: "http://127.0.0.1:9/v1"}}
        """, name="servers.yaml")
    monkeypatch.setenv("EDGEVLM_MODELS_PATH", os.pathsep.join([str(a), str(b)]))
    e = resolve("acme-echo?greeting=yo")
    assert e.adapter == "acme_vlm.adapters:EchoAdapter" and e.options == {"greeting": "yo"}
    assert resolve("acme-server").options["base_url"] == "http://127.0.0.1:9/v1"
    assert main(["models", "--check", "acme-echo?greeting=yo"]) == 0
    assert "reply:        'yo 224x168 from acme-1'" in capsys.readouterr().out
    # the run driver's path: load_adapter on the spec
    from edgevlm_eval.core.types import Request
    from edgevlm_eval.model_adapters.check import probe_image

    ad = load_adapter("acme-echo")
    assert ad.model_entry.source == str(a / "models.yaml")
    assert ad.generate([Request(id="x", images=(probe_image(tmp_path),), query="q")])[0].text == \
        "hello 224x168 from acme-1"


def test_unknown_option_of_a_user_adapter_names_the_file(user_dir):
    set_models_path([user_dir])
    with pytest.raises(ConfigError, match=r"my-echo' \(.*models.yaml\).*unexpected keyword argument 'volume'"):
        load_adapter("my-echo?volume=11")


@pytest.mark.parametrize("entry,words", [
    ("{name: x, adapter: openai, checkpoint: m, colour: red}", "unknown keys ['colour']"),
    ("{adapter: openai, checkpoint: m}", "`name` must be"),
    ("{name: 'a?b', adapter: openai, checkpoint: m}", "`name` must be"),
    ("{name: x, checkpoint: m}", "`adapter` must be"),
    ("{name: x, adapter: 'not a ref'}", "`adapter` must be"),
    ("{name: x, adapter: openai}", "`checkpoint` must be"),
    ("{name: x, adapter: openai, checkpoint: m, options: [1]}", "`options` must be"),
    ("{name: x, adapter: openai, checkpoint: m, options: {api_key: sk-1}}", "secrets never go"),
    ("{name: x, adapter: openai, checkpoint: m, price: {input: 1}}", "`price` must be"),
    ("{name: x, adapter: openai, checkpoint: m, price: {input: -1, output: 2}}", "`price.input` must be"),
    ("{name: x, adapter: openai, checkpoint: m, edge_latency_s: 0.3}", "`edge_latency_basis` must be set"),
    ("{name: x, adapter: openai, checkpoint: m, edge_latency_s: -2, edge_latency_basis: b}", "positive number"),
    ("{name: gpt-4o, adapter: openai, checkpoint: m}", "name of a built-in model"),
    ("{name: mine, adapter: openai, checkpoint: m, override: true}", "no built-in model of that name"),
])
def test_bad_entries_name_file_entry_and_key(tmp_path, entry, words):
    f = _write(tmp_path / "d", f"models:\n  - {entry}\n")
    set_models_path([tmp_path / "d"])
    with pytest.raises(ConfigError) as ei:
        list_models()
    msg = str(ei.value)
    assert str(f) in msg and words in msg, msg
    assert "models[0]" in msg or "entry" in msg


def test_bad_files_and_folders(tmp_path):
    _write(tmp_path / "d", "name: nuscenes\nconverter: nuscenes\n", name="task.yaml")
    set_models_path([tmp_path / "d"])
    with pytest.raises(ConfigError, match="task.yaml.*top-level `models:` list"):
        list_models()
    set_models_path([tmp_path / "nowhere"])
    with pytest.raises(ConfigError, match="models folder not found.*nowhere.*--models-dir"):
        resolve("gpt-4o")
    _write(tmp_path / "e", "models:\n  - {name: twice, adapter: openai, checkpoint: m}\n", name="one.yaml")
    _write(tmp_path / "e", "models:\n  - {name: twice, adapter: hf, checkpoint: m}\n", name="two.yaml")
    set_models_path([tmp_path / "e"])
    with pytest.raises(ConfigError, match="two.yaml.*'twice' is defined twice.*one.yaml"):
        list_models()


def test_override_replaces_a_builtin_entry(tmp_path):
    _write(tmp_path / "d", """
        models:
          - name: gpt-4o
            override: true
            adapter: openai
            checkpoint: gpt-4o-2024-11-20
            options: {base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
            price: {input: 2.5, output: 10}
        """)
    set_models_path([tmp_path / "d"])
    e = resolve("gpt-4o")
    assert e.checkpoint == "gpt-4o-2024-11-20" and e.source.endswith("models.yaml")
    assert [x.name for x in list_models()].count("gpt-4o") == 1


def test_broken_third_party_adapters(tmp_path, capsys):
    d = tmp_path / "d"
    (d / "p").mkdir(parents=True)
    (d / "p" / "a.py").write_text(ADAPTER_SRC)
    (d / "p" / "syntax.py").write_text("def (:\n")
    _write(d, """
        models:
          - {name: not-adapter, adapter: "p/a.py:NotAnAdapter"}
          - {name: no-class, adapter: "p/a.py:Missing"}
          - {name: no-module, adapter: "nonexistent_pkg_xyz.mod:Thing"}
          - {name: broken, adapter: "p/syntax.py:Thing"}
          - {name: no-file, adapter: "p/none.py:Thing"}
        """)
    set_models_path([d])
    expected = {"not-adapter": "not an Adapter subclass", "no-class": "has no 'Missing'",
                "no-module": "importing nonexistent_pkg_xyz.mod failed: ModuleNotFoundError",
                "broken": "SyntaxError", "no-file": "file not found"}
    for name, words in expected.items():
        with pytest.raises(ConfigError) as ei:
            load_adapter(name)
        assert words in str(ei.value) and f"entry '{name}'" in str(ei.value) and "key 'adapter'" in str(ei.value)
    # the listing still works and shows the problem on the entry's row
    set_models_path([])
    assert main(["models", "--models-dir", str(d), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert "not an Adapter subclass" in rows["not-adapter"]["error"] and "capabilities" in rows["gpt-4o"]


def test_spec_forms_still_resolve_with_a_user_path(user_dir):
    set_models_path([user_dir])
    assert resolve("qwen2_5_vl:/models/x").checkpoint == "/models/x"
    with pytest.raises(UnknownNameError) as ei:
        resolve("my-ecco")
    assert ei.value.known[0] == "my-echo"
    assert registry.models_path() == [(str(user_dir), "--models-dir")]
