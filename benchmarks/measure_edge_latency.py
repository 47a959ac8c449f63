"""Measure a model's per-answer edge latency once, for its registry entry's declared figure
(`edge_latency_s`, docs/models.md): single requests (one at a time, as an edge device serves one
stream), a warm-up request excluded, on frames of a task with the history edgeVLM sends (H entries
of CRM snippets with images). Prints the median, the 90th percentile and the machine.

    python benchmarks/measure_edge_latency.py --model demo-svlm --task demo --n 40 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from edgevlm_eval.core.types import HistoryEntry, Request
from edgevlm_eval.model_adapters.registry import load_adapter
from edgevlm_eval.tasks import load_task
from edgevlm_eval.tasks.streams import load_streams


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--task", default="demo")
    p.add_argument("--n", type=int, default=40, help="timed requests")
    p.add_argument("--H", type=int, default=2, help="history entries per request (edgeVLM's CRM snippets)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    task = load_task(a.task)
    streams, _ = load_streams(task, None)
    frames = [f for s in streams for f in s.frames][: a.n + 1 + a.H]
    adapter = load_adapter(a.model)

    def request(k: int) -> Request:
        f = frames[k + a.H]
        hist = tuple(HistoryEntry(images=frames[k + i].images, text=task.history_snippet(a.H - i, ("car",)),
                                  kind="snippet", source="lvlm" if i == 0 else "svlm") for i in range(a.H))
        return Request(id=f"bench|{f.stream_id}|{f.index}", images=f.images, query=f.query, history=hist)

    adapter.generate([request(0)])  # warm-up: lazy set-up is not an answer's latency
    times = []
    for k in range(1, a.n + 1):
        t0 = time.perf_counter()
        rep = adapter.generate([request(k)])[0]
        times.append(time.perf_counter() - t0)
        assert rep.ok, rep.error
    times.sort()
    print(f"model {a.model}: {a.n} single requests with {a.H} history entries, {a.threads} thread(s)")
    print(f"median {statistics.median(times):.4f} s, p90 {times[int(0.9 * (len(times) - 1))]:.4f} s, "
          f"min {times[0]:.4f} s, max {times[-1]:.4f} s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}, "
          f"{platform.platform()}, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
