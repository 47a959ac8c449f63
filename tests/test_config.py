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
