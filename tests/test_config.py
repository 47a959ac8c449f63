import textwrap

import pytest

from edgevlm_eval.core.taskconfig import load_task_file
from edgevlm_eval.core.errors import ConfigError, DatasetError, UnknownNameError
from edgevlm_eval.tasks import discover, load_task

BASE = """
fps: 1
images_per_query: 1
query_template: "Which of these appear? {labels}"
history_template: "This is the image from {d} seconds ago; detected {answer}."
metrics: [micro_f1, macro_f1, exact_match]
label_space:
  multi_label: true
  labels: [car, {name: pedestrian, synonyms: [people]}]
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_include_merges_and_child_wins(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "mine.yaml", """
        include: _base.yaml
        name: mine
        converter: generic
        fps: 2
        dataset: {root_env: MINE_ROOT, split: val}
        """)
    t = load_task_file(p)
    assert t.fps == 2.0 and t.images_per_query == 1
    assert t.label_space.names == ["car", "pedestrian"]
    assert t.query == "Which of these appear? car, pedestrian"
    assert t.history_snippet(2.4, ["car", "pedestrian"]) == \
        "This is the image from 2 seconds ago; detected car, pedestrian."
    assert t.history_snippet(1.0, []) == "This is the image from 1 seconds ago; detected nothing."
    assert t.primary_metric == "micro_f1"


def test_history_rounding(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", "include: _base.yaml\nname: t\nconverter: generic\ndataset: {}\nhistory_rounding: 1\n")
    assert load_task_file(p).history_snippet(1.5, ["car"]).startswith("This is the image from 1.5 seconds ago")


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = write(tmp_path, "bad.yaml", "name: x\nfps: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_task_file(p)
    assert "bad.yaml" in str(e.value) and "malformed YAML" in str(e.value) and "line" in str(e.value)


def test_unknown_key_names_file_and_key(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", "include: _base.yaml\nname: t\nconverter: generic\ndataset: {spilt: val}\n")
    with pytest.raises(ConfigError) as e:
        load_task_file(p)
    assert "t.yaml" in str(e.value) and "dataset.spilt" in str(e.value)
    p = write(tmp_path, "u.yaml", "include: _base.yaml\nname: u\nconverter: generic\ndataset: {}\nfsp: 3\n")
    with pytest.raises(ConfigError, match="key 'fsp'"):
        load_task_file(p)


def test_wrong_types_and_missing_keys(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", "include: _base.yaml\nname: t\nconverter: generic\ndataset: {}\nfps: fast\n")
    with pytest.raises(ConfigError, match="key 'fps': expected int or float"):
        load_task_file(p)
    p = write(tmp_path, "v.yaml", "include: _base.yaml\nname: v\ndataset: {}\n")
    with pytest.raises(ConfigError, match="key 'converter': required key is missing"):
        load_task_file(p)


def test_template_placeholders_checked(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", 'include: _base.yaml\nname: t\nconverter: generic\ndataset: {}\n'
                                  'history_template: "{seconds} ago: {answer}"\n')
    with pytest.raises(ConfigError, match="history_template.*seconds"):
        load_task_file(p)


def test_metrics_must_fit_the_label_kind(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", "include: _base.yaml\nname: t\nconverter: generic\ndataset: {}\nmetrics: [accuracy]\n")
    with pytest.raises(ConfigError, match="do not fit a multi-label task"):
        load_task_file(p)


def test_include_cycle_and_missing_include(tmp_path):
    write(tmp_path, "a.yaml", "include: b.yaml\n")
    write(tmp_path, "b.yaml", "include: a.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_task_file(tmp_path / "a.yaml")
    p = write(tmp_path, "c.yaml", "include: nowhere.yaml\nname: c\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_task_file(p)


def test_a_users_yaml_includes_a_shipped_task_by_its_name(tmp_path):
    # a bigger demo world: the shipped task with one option changed, `.yaml` left off
    p = write(tmp_path, "demo32.yaml", "name: demo32\ninclude: demo\nconverter_options:\n  n_streams: 32\n")
    task = load_task_file(p)
    assert (task.name, task.converter) == ("demo32", "demo")
    assert task.converter_options["n_streams"] == 32 and task.converter_options["frames_per_stream"] == 20
    assert "car" in task.label_space.names
    # a file next to the including one wins over a shipped one of the same name
    write(tmp_path, "_base.yaml", BASE)
    write(tmp_path, "demo.yaml", "include: _base.yaml\nname: local\nconverter: generic\ndataset: {}\n")
    assert load_task_file(p).converter == "generic"


def test_data_root_resolution(tmp_path, monkeypatch):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", "include: _base.yaml\nname: t\nconverter: generic\n"
                                  "dataset: {root_env: T_ROOT_TEST, layout: 'frames/<stream>/*.jpg'}\n")
    t = load_task_file(p)
    monkeypatch.delenv("T_ROOT_TEST", raising=False)
    with pytest.raises(DatasetError, match=r"--data-root or set \$T_ROOT_TEST"):
        t.resolve_root()
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as e:
        t.resolve_root(missing)
    assert str(missing) in str(e.value) and "frames/<stream>/*.jpg" in str(e.value)
    monkeypatch.setenv("T_ROOT_TEST", str(tmp_path))
    assert t.resolve_root() == tmp_path
    assert t.resolve_root(tmp_path / "") == tmp_path  # --data-root wins over the env var


def test_user_tasks_dir_and_unknown_task(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    write(tmp_path, "my_task.yaml", "include: _base.yaml\nname: my_task\nconverter: generic\ndataset: {}\n")
    assert "my_task" in discover([tmp_path])
    assert "_base" not in discover([tmp_path])
    assert load_task("my_task", [tmp_path]).name == "my_task"
    with pytest.raises(UnknownNameError) as e:
        load_task("my_tsak", [tmp_path])
    assert e.value.known[0] == "my_task"  # nearest first


def test_task_name_must_match_file(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    write(tmp_path, "alpha.yaml", "include: _base.yaml\nname: beta\nconverter: generic\ndataset: {}\n")
    with pytest.raises(ConfigError, match="differs from the file name"):
        load_task("alpha", [tmp_path])


# -- bad values: each is a ConfigError naming the file, the key and what was expected ----------------------------

BASE_TASK = "include: _base.yaml\nname: t\nconverter: generic\ndataset: {}\n"


@pytest.mark.parametrize("extra, key, expected", [
    ("fps: .nan\n", "fps", "must be a positive finite number"),
    ("fps: .inf\n", "fps", "must be a positive finite number"),
    ("fps: -1\n", "fps", "must be a positive finite number"),
    ("images_per_query: 100000000\n", "images_per_query", "must be 1..32"),
    ("images_per_query: 0\n", "images_per_query", "must be 1..32"),
    ("history_rounding: -1\n", "history_rounding", "must be >= 0"),
    ("query_template: 'Which? {labels!z}'\n", "query_template", "cannot be filled in"),
    ("query_template: 'Which? {labels:d}'\n", "query_template", "Unknown format code 'd'"),
    ("query_template: 'Which? {}'\n", "query_template", "unknown placeholders {}"),
    ("history_rounding: 1\nhistory_template: '{d:d} s ago: {answer}'\n", "history_template",
     "Unknown format code 'd' for object of type 'float'"),
    ("metrics: []\n", "metrics", "at least one metric"),
    ("metrics: [micro_f1, micro_f1]\n", "metrics", "listed more than once"),
    ("label_space: {labels: []}\n", "label_space.labels", "at least one label"),
    ("label_space: {labels: ['', car]}\n", "label_space.labels[0]", "has no letters or digits"),
    ("label_space: {labels: [{name: car, synonyms: cone}]}\n", "label_space.labels[0].synonyms",
     "expected a list of words or phrases, got 'cone'"),
    ("label_space: {labels: [{name: 5}]}\n", "label_space.labels[0]", "expected a label name (text), got 5"),
    ("label_space: {labels: [car, bus], none_label: none}\n", "label_space.none_label", "for single-label tasks"),
    ("name: ''\n", "name", "bad task name ''"),
    ("name: ../../elsewhere\n", "name", "bad task name '../../elsewhere'"),
])
def test_bad_values_name_file_key_and_expectation(tmp_path, extra, key, expected):
    write(tmp_path, "_base.yaml", BASE)
    p = tmp_path / "t.yaml"
    text = BASE_TASK + extra
    if extra.startswith("name:"):
        text = text.replace("name: t\n", "")
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_task_file(p)
    assert str(e.value).startswith(f"{p}: key '{key}': ") and expected in str(e.value)


SINGLE = ("include: _base.yaml\nname: t\nconverter: generic\ndataset: {}\nmetrics: [accuracy]\n"
          "label_space:\n  multi_label: false\n  labels: [cutting, stirring]\n")


@pytest.mark.parametrize("extra, expected", [
    ("  none_label: cutting\n", "is also a label"),
    ("  none_label: ''\n", "expected a name for the 'no label' ground truth"),
    ("  score_none: true\n", "score_none: true needs a label_space.none_label"),
])
def test_none_label_mistakes(tmp_path, extra, expected):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", SINGLE + extra)
    with pytest.raises(ConfigError, match=expected):
        load_task_file(p)
    assert load_task_file(write(tmp_path, "ok.yaml", SINGLE + "  none_label: none\n")).label_space.none_label == "none"


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    write(tmp_path, "_base.yaml", BASE)
    p = write(tmp_path, "t.yaml", BASE_TASK + "fps: 1\nfps: 2\n")
    with pytest.raises(ConfigError) as e:
        load_task_file(p)
    assert str(e.value) == (f"{p}: malformed YAML (line 6, column 1): key 'fps' appears twice (first at line 5); "
                            "a later value would silently win")


def test_unreadable_yaml_files(tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes("name: t\ndescription: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_task_file(p)
    assert str(e.value) == f"{p}: YAML file is not UTF-8 text (byte 0xe9 at line 2, column 17); save it as UTF-8"
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="YAML file is a folder, not a file"):
        load_task_file(tmp_path / "folder.yaml")
    inc = write(tmp_path, "inc.yaml", "include: folder.yaml\nname: inc\n")
    with pytest.raises(ConfigError, match=r"key 'include': included file 'folder.yaml' is a folder"):
        load_task_file(inc)
    blank = write(tmp_path, "blank.yaml", "include: ''\nname: blank\n")
    with pytest.raises(ConfigError, match="key 'include': expected a file name or a list of file names, got ''"):
        load_task_file(blank)


def test_empty_data_root_argument_does_not_fall_back_to_the_env_var(tmp_path, monkeypatch):
    write(tmp_path, "_base.yaml", BASE)
    t = load_task_file(write(tmp_path, "t.yaml", BASE_TASK.replace("dataset: {}", "dataset: {root_env: T_ROOT_E}")))
    monkeypatch.setenv("T_ROOT_E", str(tmp_path))
    assert t.resolve_root() == tmp_path
    with pytest.raises(DatasetError, match=r"the dataset root given \(--data-root\) is an empty string"):
        t.resolve_root("")


def test_tasks_dir_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match=r"nope: task folder \(--tasks-dir\) not found"):
        discover([tmp_path / "nope"])


def test_every_configuration_yaml_refuses_the_same_mistakes(tmp_path):
    """Task YAMLs, --engine-config and models.yaml share one reader (core/yamlfile.py): a key given
    twice is refused with its line (PyYAML alone keeps the last value silently)."""
    from edgevlm_eval.app.options import _yaml_options
    from edgevlm_eval.model_adapters.user import parse_models_file

    engine = write(tmp_path, "run.yaml", "K_call: 3\ntau: 1.0\nK_call: 5\n")
    with pytest.raises(ConfigError) as e:
        _yaml_options(str(engine))
    assert str(e.value) == (f"{engine}: key '--engine-config': malformed YAML (line 3, column 1): key 'K_call' "
                            "appears twice (first at line 1); a later value would silently win")
    models = write(tmp_path, "models.yaml", "models:\n  - name: a\n    adapter: openai\n    adapter: hf\n")
    with pytest.raises(ConfigError, match=r"models.yaml: malformed YAML \(line 4, column 5\): key 'adapter' "
                                          r"appears twice \(first at line 3\)"):
        parse_models_file(models)
    listed = write(tmp_path, "list.yaml", "- K_call: 3\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        _yaml_options(str(listed))
    with pytest.raises(ConfigError, match="engine config not found"):
        _yaml_options(str(tmp_path / "missing.yaml"))
    assert parse_models_file(write(tmp_path, "empty.yaml", "")) == []
