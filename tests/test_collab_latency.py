"""Latency sources, the Mahimahi uplink, and the trace format's bad-input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgevlm_eval.collab.latency import (ConstantUplink, FileLatency, FixedLatency, LogNormalLatency, MahimahiUplink,
                                          check_latency_arrays, parse_latency)
from edgevlm_eval.collab.testing import toy_streams, toy_task, toy_trace
from edgevlm_eval.collab.trace import read_trace, write_trace
from edgevlm_eval.core.errors import ConfigError, DatasetError


@pytest.fixture
def streams():
    return toy_streams(toy_task(), 2, 5)


def test_fixed_and_measured(streams):
    tr = toy_trace(streams, latency=lambda s, t: 0.1 * (t + 1))
    assert parse_latency("fixed:3").latencies(streams, tr)["s0"].tolist() == [3.0] * 5
    assert parse_latency("measured").latencies(streams, tr)["s1"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(DatasetError, match="negative"):
        FixedLatency(-1)


def test_lognormal_is_seeded_correlated_and_per_stream(streams):
    long = toy_streams(toy_task(), 2, 4000)
    a = LogNormalLatency(median=1.2, sigma=0.5, rho=0.9, seed=7).latencies(long, None)
    b = LogNormalLatency(median=1.2, sigma=0.5, rho=0.9, seed=7).latencies(long[1:], None)
    assert np.array_equal(a["s1"], b["s1"])  # a stream's latencies do not depend on the others (sharding)
    x = np.log(a["s0"])
    assert np.median(a["s0"]) == pytest.approx(1.2, rel=0.15)
    assert np.std(x) == pytest.approx(0.5, rel=0.15)
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert lag1 == pytest.approx(0.9, abs=0.05)
    c = LogNormalLatency(median=1.2, sigma=0.5, rho=0.9, seed=8).latencies(long, None)
    assert not np.array_equal(a["s0"], c["s0"])
    assert parse_latency("lognormal:median=2,sigma=0.1,rho=0.5,seed=3").describe()["seed"] == 3
    with pytest.raises(ConfigError, match="unknown lognormal"):
        parse_latency("lognormal:mean=2")


def test_latency_file_overrides_trace_and_names_bad_lines(tmp_path, streams):
    tr = toy_trace(streams, latency=0.5)
    f = tmp_path / "lat.csv"
    f.write_text("stream,frame,latency_s\ns0,1,2.5\ns1,4,0\n")
    src = parse_latency(f"file:{f}")
    arr = src.latencies(streams, tr)
    assert arr["s0"].tolist() == [0.5, 2.5, 0.5, 0.5, 0.5] and arr["s1"][4] == 0.0
    assert src.describe()["frames_from_file"] == 2 and src.describe()["frames_from_trace"] == 8
    for body, msg in [("s0,1,abc\n", "line 2: latency_s"), ("s0,1,2\ns0,x,1\n", "line 3: frame 'x'"),
                      ("s0,1,-0.5\n", "line 2: latency_s is negative"), ("s0,1,nan\n", "line 2: latency_s is nan"),
                      ("s0,1\n", "line 2: expected 3 columns"), ("s0,1,1\ns0,1,2\n", "line 3: .*appears twice")]:
        f.write_text("stream,frame,latency_s\n" + body)
        with pytest.raises(DatasetError, match=msg):
            FileLatency(f)
    f.write_text("stream,frame,lat\n")
    with pytest.raises(DatasetError, match="line 1: header"):
        FileLatency(f)


def test_unknown_latency_source():
    with pytest.raises(ConfigError, match="unknown latency source.*fixed:D"):
        parse_latency("gaussian:1")


def test_nan_latency_from_any_source_is_rejected_with_its_location(streams):
    arrays = {"s0": np.array([0.1, 0.2, 0.3, 0.4, 0.5]), "s1": np.array([0.1, np.nan, 0.3, 0.4, 0.5])}
    with pytest.raises(DatasetError, match=r"stream 's1', frame 1\) has latency nan"):
        check_latency_arrays(arrays, streams, "x")


def _mm(tmp_path, stamps):
    p = tmp_path / "link.up"
    p.write_text("".join(f"{s}\n" for s in stamps))
    return MahimahiUplink(p)


def test_mahimahi_upload_times(tmp_path):
    up = _mm(tmp_path, [1, 2, 3, 10])  # 4 packets per 10 ms period
    assert up.upload_s(3000, 0.0) == pytest.approx(0.002)  # packets at 1 and 2 ms
    assert up.upload_s(1500, 0.003) == pytest.approx(0.0)  # an opportunity exactly at the start
    assert up.upload_s(3000, 0.004) == pytest.approx(0.007)  # at 10 ms, then 11 ms (next period)
    assert up.upload_s(7500, 0.0) == pytest.approx(0.011)  # 1, 2, 3, 10, 11
    assert up.upload_s(1, 0.0105) == pytest.approx(0.0005)  # 1 byte = 1 packet: at 11 ms
    assert up.upload_s(1500, 0.010) == pytest.approx(0.0)  # the opportunity at 10 ms = one period
    assert up.upload_s(3000, 0.020) == pytest.approx(0.001)  # 20 ms (end of period 2), then 21 ms
    assert up.mean_mbps() == pytest.approx(4 * 1500 * 8 / 0.010 / 1e6)


def test_mahimahi_bad_file(tmp_path):
    p = tmp_path / "bad.up"
    p.write_text("1\n2\nx\n")
    with pytest.raises(DatasetError, match="line 3"):
        MahimahiUplink(p)
    p.write_text("5\n3\n")
    with pytest.raises(DatasetError, match="line 2: timestamp 3"):
        MahimahiUplink(p)


def test_real_mahimahi_trace(shared_fixtures):
    path = shared_fixtures / "traces" / "mahimahi_ATT-LTE-driving-2016.up"
    up = MahimahiUplink(path)
    stamps = [int(x) for x in path.read_text().split()]
    assert up.period_ms == stamps[-1]
    assert 110_000 <= up.period_ms <= 130_000  # 120 s of driving

    def naive(n_bytes, start_s):
        need, t0 = math.ceil(n_bytes / 1500), start_s * 1000
        k = 0
        while True:
            for s in stamps:
                t = s + k * stamps[-1]
                if t >= t0:
                    need -= 1
                    if need == 0:
                        return (t - t0) / 1000
            k += 1

    for start in (0.0, 13.37, 60.0, 119.5, 250.0):
        assert up.upload_s(200_000, start) == pytest.approx(naive(200_000, start))
    # a 200 kB frame over a link of ~1.5 Mbps median takes about a second, more in the dead spots
    times = [up.upload_s(200_000, s) for s in range(0, 120)]
    assert 0.3 < float(np.median(times)) < 5 and max(times) > 4


def test_network_latency_composes_upload_server_download(tmp_path, streams):
    p = tmp_path / "link.up"
    p.write_text("".join(f"{i}\n" for i in range(1, 1001)))  # one packet per ms: 12 Mbps, period 1 s
    tr = toy_trace(streams, latency=2.0, image_bytes=15000)  # 10 packets -> 10 ms from any ms boundary
    for r in tr.records.values():
        r.inference_s, r.queue_s, r.download_s = 0.3, 0.1, 0.05
    src = parse_latency(f"network:{p}")
    arr = src.latencies(streams, tr)
    # frame 0 at 0 ms: packets at 1..10 ms; frames 1.. at k s: the opportunity at exactly k*1000 ms counts
    assert arr["s0"].tolist() == pytest.approx([0.010 + 0.4 + 0.05] + [0.009 + 0.4 + 0.05] * 4)
    src = parse_latency(f"network:{p},bytes=1500,download=0,server=1.0")
    assert src.latencies(streams, tr)["s1"].tolist() == pytest.approx([1.001] + [1.0] * 4)


def test_constant_uplink():
    assert ConstantUplink(8).upload_s(1_000_000, 0) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        ConstantUplink(0)


# -- trace files --------------------------------------------------------------------------------


def _write(tmp_path, streams, **kw):
    tr = toy_trace(streams, **kw)
    p = tmp_path / "trace.jsonl"
    write_trace(p, {"task": "toy", "model": "m"}, tr.records.values())
    return p


def test_trace_roundtrip_and_coverage(tmp_path, streams):
    p = _write(tmp_path, streams, latency=0.7, answer="car, truck")
    tr = read_trace(p)
    assert len(tr.records) == 10 and tr.get("s1", 3).total_s == 0.7
    tr.check_covers(streams, "toy")
    tr.reparse(toy_task().label_space)
    assert tr.get("s0", 0).labels == ("car", "truck")
    more = toy_streams(toy_task(), 3, 5)
    with pytest.raises(DatasetError, match=r"missing \(stream 's2', frame 0\)"):
        tr.check_covers(more, "toy")
    with pytest.raises(DatasetError, match="is for task 'toy'"):
        tr.check_covers(streams, "other")


def test_trace_duplicate_and_bad_latency_named(tmp_path, streams):
    p = _write(tmp_path, streams)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines + [lines[3]]) + "\n")
    with pytest.raises(DatasetError, match=r"line 12: \(stream 's0', frame 2\) is already in the trace at line 4"):
        read_trace(p)
    d = json.loads(lines[2])
    d["latency"]["total_s"] = -1
    p.write_text("\n".join([lines[0], json.dumps(d)]) + "\n")
    with pytest.raises(DatasetError, match=r"line 2 \(stream 's0', frame 1\): latency.total_s is negative"):
        read_trace(p)
    d["latency"]["total_s"] = float("nan")
    p.write_text("\n".join([lines[0], json.dumps(d)]) + "\n")
    with pytest.raises(DatasetError, match="latency.total_s is nan"):
        read_trace(p)
    p.write_text('{"format": "something-else"}\n')
    with pytest.raises(DatasetError, match="not an LVLM trace"):
        read_trace(p)


def test_5g_preset_is_the_documented_lognormal():
    from edgevlm_eval.collab.latency import LogNormalLatency, parse_latency
    from edgevlm_eval.core.errors import ConfigError

    src = parse_latency("5g")
    assert isinstance(src, LogNormalLatency)
    assert (src.median, src.sigma, src.rho, src.seed) == (1.9, 0.5, 0.8, 0)
    assert parse_latency("5g:seed=3").seed == 3
    with pytest.raises(ConfigError, match="5g takes only seed"):
        parse_latency("5g:median=4")
