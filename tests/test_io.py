import os
import stat

from edgevlm_eval.core.io import atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_uses_normal_mode(tmp_path):
    p = tmp_path / "sub" / "r.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_text(p, "second\n")
    assert p.read_text() == "second\n"
    assert [x.name for x in p.parent.iterdir()] == ["r.json"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
