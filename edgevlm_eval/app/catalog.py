"""The catalogue commands: `edgevlm-eval tasks`, `models` (with `--check`) and `streams`."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.table import Table

from edgevlm_eval.core.errors import EdgeVLMError
from edgevlm_eval.core.images import check_image
from edgevlm_eval.model_adapters import registry
from edgevlm_eval.model_adapters.check import check_model
from edgevlm_eval.tasks import discover, get_converter, load_task_file
from edgevlm_eval.tasks.streams import write_streams

from .args import add_models_dir_arg, add_selection_args, add_task_args, add_tasks_dir_arg
from .console import console
from .data import load_from_args, summary_line
from .progress import Progress


def tasks_arguments(p) -> None:
    add_tasks_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def models_arguments(p) -> None:
    p.description += ". User entries come from models.yaml files (docs/models.md)."
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_models_dir_arg(p)
    p.add_argument("--check", metavar="SPEC", help="load this model (a name or spec) and answer one real request "
                   "about a small generated image; exit 2 with the cause when it cannot")


def streams_arguments(p) -> None:
    p.description += (". The file starts with a header line, then one frame per line "
                      "(stream, index, timestamp_s, images, query, labels).")
    add_task_args(p)
    add_selection_args(p)
    p.add_argument("--out", required=True, metavar="F.jsonl", help="output file")
    p.add_argument("--check-images", dest="check_images", action="store_true",
                   help="decode every frame image and report missing or corrupt ones")


def tasks_main(args) -> int:



    rows = []
    for name, path in sorted(discover(args.tasks_dir).items()):
        try:
            t = load_task_file(path)
            get_converter(t.converter).resolved_options(t)  # an unknown converter or option shows here
        except EdgeVLMError as e:
            rows.append({"name": name, "error": str(e), "file": str(path)})
            continue
        found = t.data_found()
        env = t.dataset.get("root_env")
        rows.append({
            "name": t.name, "converter": t.converter, "fps": t.fps, "images_per_query": t.images_per_query,
            "multi_label": t.label_space.multi_label, "labels": t.label_space.names,
            "metrics": t.metrics, "data": {None: "not needed", True: "found", False: "not found"}[found],
            "root_env": env, "file": str(path),
        })
    # a task whose YAML (or converter) is broken is listed with its error, and the exit status says so
    status = 1 if any("error" in r for r in rows) else 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return status
    table = Table(title="edgevlm-eval tasks")
    for col in ("task", "rate", "img/q", "labels", "metrics", "data"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:  # YAML text and error messages may hold [brackets]: shown as written
            table.add_row(escape(r["name"]), "", "", f"[red]{escape(r['error'])}[/red]", "", "")
            continue
        kind = "multi" if r["multi_label"] else "single"
        data = r["data"] + (f" (${r['root_env']})" if r["root_env"] and r["data"] != "not needed" else "")
        table.add_row(escape(r["name"]), f"{r['fps']:g} FPS", str(r["images_per_query"]),
                      escape(f"{len(r['labels'])} ({kind}): " + ", ".join(r["labels"])), ", ".join(r["metrics"]),
                      escape(data))
    console().print(table)
    return status


def models_main(args) -> int:



    saved = [p for p, by in registry.models_path() if by == "--models-dir"]
    registry.set_models_path(args.models_dir)
    try:
        if args.check:
            return _check_model(args.check, as_json=args.json)
        rows = [registry.entry_summary(e) for e in registry.list_models()]
    finally:
        registry.set_models_path(saved)  # in-process callers (tests) keep their own search path
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table(title="edgevlm-eval models")
    for col in ("name", "adapter", "checkpoint", "capabilities", "edge s", "price $/1M in/out", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        caps = r.get("capabilities") or {}
        flags = ", ".join(k for k, v in caps.items() if v is True)
        if "error" in r:
            flags = f"[red]{r['error']}[/red]"
        edge = f"{r['edge_latency_s']:g}" if r.get("edge_latency_s") is not None else ""
        price = r.get("price")
        cost = f"{price['input_usd_per_mtok']:g} / {price['output_usd_per_mtok']:g}" if price else ""
        desc = str(r.get("description") or "")
        if r.get("source") not in (None, "built-in"):
            desc += f" [dim](from {r['source']})[/dim]"
        table.add_row(str(r.get("name")), str(r.get("adapter")), str(r.get("checkpoint") or ""), flags, edge, cost,
                      desc)
    console().print(table)
    return 0


def _check_model(spec: str, *, as_json: bool) -> int:
    """`models --check SPEC`: one real request through the preflight check (never prints a key)."""


    rep = check_model(spec)
    r = rep.reply
    opts = rep.adapter.get("options") or {}
    found = {
        "spec": spec, "name": rep.entry.get("name"), "source": rep.entry.get("source"),
        "adapter": rep.entry.get("adapter"), "checkpoint": rep.adapter.get("checkpoint", rep.entry.get("checkpoint")),
        "endpoint": opts.get("base_url"), "capabilities": rep.adapter.get("capabilities") or rep.entry.get(
            "capabilities"),
        "key_env": rep.key_env, "key_set": rep.key_set, "reply": r.raw_text or r.text,
        "latency_s": round(rep.latency_s, 4), "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "cost_usd": rep.cost_usd, "price": rep.entry.get("price"), "edge_latency_s": rep.entry.get("edge_latency_s"),
        "edge_latency_basis": rep.entry.get("edge_latency_basis"),
    }
    if as_json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    caps = ", ".join(k for k, v in (found["capabilities"] or {}).items() if v is True) or "none"
    key = "none" if not rep.key_env else f"${rep.key_env} ({'set' if rep.key_set else 'not set'})"
    usage = "not reported" if r.prompt_tokens is None and r.completion_tokens is None else \
        f"{r.prompt_tokens} prompt + {r.completion_tokens} completion tokens"
    lines = [f"model:        {found['name']} ({found['source']})", f"adapter:      {found['adapter']}",
             f"checkpoint:   {found['checkpoint']}"]
    if found["endpoint"]:
        lines.append(f"endpoint:     {found['endpoint']}")
    lines += [f"capabilities: {caps}", f"key:          {key}", f"reply:        {found['reply']!r}",
              f"latency:      {rep.latency_s:.3f} s", f"usage:        {usage}"]
    if rep.cost_usd is not None:
        lines.append(f"cost:         ${rep.cost_usd:.6f}")
    if found["edge_latency_s"] is not None:
        lines.append(f"edge latency: {found['edge_latency_s']:g} s ({found['edge_latency_basis']})")
    print("\n".join(lines))
    print(f"ok: {spec} answers")
    return 0


def streams_main(args) -> int:


    task, streams, info = load_from_args(args)
    extra = {"cache_key": info["cache_key"], "root": info["root"]}
    bad = []
    if args.check_images:
        seen: dict[str, str | None] = {}  # two-image queries repeat the previous frame's image
        with Progress(sum(len(s) for s in streams), "checking images") as prog:
            for s in streams:
                for f in s.frames:
                    for img in f.images:
                        if img not in seen:
                            seen[img] = check_image(img)
                        reason = seen[img]
                        if reason:
                            bad.append({"stream": f.stream_id, "frame": f.index, "reason": reason})
                    prog.advance(1)
        extra["bad_images"] = len(bad)
    write_streams(args.out, task, streams, extra)
    con = console()
    con.print(escape(summary_line(task, streams) + f" -> {args.out}" + (" (from cache)" if info["cache_hit"] else "")))
    if args.check_images:
        con.print(f"{len(bad)} frame images missing, corrupt or too large" + (":" if bad else "."))
        for b in bad[:20]:
            con.print(escape(f"  {b['stream']} frame {b['frame']}: {b['reason']}"))
        if len(bad) > 20:
            con.print(f"  ... and {len(bad) - 20} more")
    return 0
