import errno
import os
import stat
import subprocess
import sys
import threading

import pytest

from edgevlm_eval.core.errors import DatasetError, EdgeVLMError
from edgevlm_eval.core.io import WriteError, atomic_write_bytes, atomic_write_json, atomic_write_text, read_text


def test_atomic_write_replaces_and_uses_normal_mode(tmp_path):
    p = tmp_path / "sub" / "r.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_text(p, "second\n")
    assert p.read_text() == "second\n"
    assert [x.name for x in p.parent.iterdir()] == ["r.json"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


# -- failed writes: a clear WriteError, and the previous file intact ----------------------------------------------


def test_disk_full_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    p = tmp_path / "results.json"
    p.write_text("previous\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("edgevlm_eval.core.io.os.fsync", full)
    with pytest.raises(WriteError) as e:
        atomic_write_json(p, {"a": 1})
    assert str(e.value) == f"cannot write {p}: No space left on device [ENOSPC]; the previous file is unchanged"
    assert isinstance(e.value, EdgeVLMError) and isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert p.read_text() == "previous\n" and [x.name for x in tmp_path.iterdir()] == ["results.json"]
    with pytest.raises(WriteError, match="nothing was written"):
        atomic_write_text(tmp_path / "new.json", "x")
    assert not (tmp_path / "new.json").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as a stand-in for a full disk")
def test_a_real_failed_write_is_reported_plainly(tmp_path):
    # The OS refuses the write (file size limit; a full disk fails at the same call with ENOSPC)
    p = tmp_path / "streams.jsonl"
    p.write_text("previous\n")
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "from edgevlm_eval.core.io import WriteError, atomic_write_text\n"
            "try:\n"
            f"    atomic_write_text({str(p)!r}, 'x' * 5000)\n"
            "except WriteError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.strip() == f"cannot write {p}: File too large [EFBIG]; the previous file is unchanged"
    assert p.read_text() == "previous\n" and [x.name for x in tmp_path.iterdir()] == ["streams.jsonl"]


def test_a_folder_in_the_way(tmp_path):
    (tmp_path / "out.jsonl").mkdir()
    with pytest.raises(WriteError, match=r"cannot write .*out.jsonl: Is a directory \[EISDIR\]"):
        atomic_write_text(tmp_path / "out.jsonl", "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*file/sub/r.json: .*\[(ENOTDIR|EEXIST)\]"):
        atomic_write_text(tmp_path / "file" / "sub" / "r.json", "x")
    assert [x.name for x in (tmp_path / "out.jsonl").iterdir()] == []


def test_writes_through_a_symlink_and_into_a_pipe(tmp_path, no_hang):
    real = tmp_path / "real.txt"
    real.write_text("old")
    (tmp_path / "link.txt").symlink_to(real)
    atomic_write_text(tmp_path / "link.txt", "new")
    assert (tmp_path / "link.txt").is_symlink() and real.read_text() == "new"
    # `--out /dev/stdout` or a named pipe: streamed into, not replaced by a regular file
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    no_hang(atomic_write_bytes, fifo, b"through the pipe", seconds=10)
    reader.join(10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_read_text_names_the_file_and_the_bad_byte(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_bytes("stream,frame,labels\na,1.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError) as e:
        read_text(p, what="labels file", expected="<root>/labels.csv")
    assert str(e.value) == (f"labels file is not UTF-8 text (byte 0xe9 at line 2, column 12); save it as UTF-8\n"
                            f"  path tried: {p}\n  expected layout: <root>/labels.csv")
    p.write_bytes(b"\xef\xbb\xbfstream\n")
    assert read_text(p) == "stream\n"  # a byte-order mark is dropped
    with pytest.raises(DatasetError, match="labels file not found"):
        read_text(tmp_path / "nope.csv", what="labels file")
    with pytest.raises(DatasetError, match="is a folder"):
        read_text(tmp_path, what="labels file")
