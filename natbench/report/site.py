"""Build the static report site: jinja2 templates + matplotlib figures from result directories."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import jinja2

from natbench.report import data, figures

CLAIM_FIELDS = ("id", "verdict", "kind", "expected", "measured", "reason", "statement", "source")
PAGES = [
    ("index.html", "Overview"),
    ("latency.html", "Latency"),
    ("ratio.html", "NA vs window"),
    ("memory.html", "Memory"),
    ("models.html", "Models"),
    ("claims.html", "Claims"),
    ("accuracy.html", "Accuracy"),
    ("provenance.html", "Provenance"),
    ("history.html", "History"),
]


def _fmt(value: Any, digits: int = 3) -> str:
    """Numbers for tables: "–" for missing, integers with separators, floats to `digits` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("natbench.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["pretty_json"] = lambda obj: json.dumps(obj, indent=2, sort_keys=True, default=str)
    return env


def _records(frame, columns: list[str]) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    return frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")


def build_site(results: list[str | Path], out: str | Path) -> Path:
    """Write the report for `results` (oldest first; figures use the last) into `out`; returns index.html."""
    if not results:
        raise ValueError("give at least one results directory")
    dirs = [str(d) for d in results]
    frame = data.load_results(dirs)
    latest = frame[frame["source"] == dirs[-1]]
    out = Path(out)
    fig_dir = out / "figures"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)  # a rebuild must not keep figures of data that is gone
    fig_dir.mkdir(parents=True)
    paper = data.paper_figures()

    latency_groups = data.scaling_groups(latest, "latency_ms")
    for i, g in enumerate(latency_groups):
        g["figure"] = "figures/" + figures.scaling(g, "latency (ms)", fig_dir / f"latency-{i}.png")
    latency_kernel_groups = data.kernel_groups(latest, "latency_ms")
    for i, g in enumerate(latency_kernel_groups):
        g["figure"] = "figures/" + figures.scaling(g, "latency (ms)", fig_dir / f"latency-kernel-{i}.png")
    memory_kernel_groups = data.kernel_groups(latest, "peak_mem_bytes")
    for i, g in enumerate(memory_kernel_groups):
        g["figure"] = "figures/" + figures.scaling(
            g, "peak memory (MiB)", fig_dir / f"memory-kernel-{i}.png", 1 / 2**20
        )
    memory_groups = data.scaling_groups(latest, "peak_mem_bytes")
    for i, g in enumerate(memory_groups):
        g["figure"] = "figures/" + figures.scaling(
            g, "peak memory (MiB)", fig_dir / f"memory-{i}.png", 1 / 2**20
        )

    pairs = data.na_vs_window(latest)
    ratio_figs: dict[str, str | None] = {"speed": None, "memory": None, "kernel": None}
    if not pairs.empty:
        ratio_figs["speed"] = "figures/" + figures.na_vs_window(
            pairs,
            paper["na_vs_wsa"],
            "relative_speed_pct",
            "speed_tiled_cuda",
            "relative speed of NA vs window (%)",
            fig_dir / "na-vs-window-speed.png",
        )
        kernel_fig = figures.ratio_vs_kernel(
            pairs,
            "relative_speed_pct",
            "relative speed of NA vs window (%)",
            fig_dir / "na-vs-window-kernel.png",
        )
        ratio_figs["kernel"] = "figures/" + kernel_fig if kernel_fig else None
        if pairs["relative_memory_pct"].notna().any():
            ratio_figs["memory"] = "figures/" + figures.na_vs_window(
                pairs,
                paper["na_vs_wsa"],
                "relative_memory_pct",
                "memory_tiled_cuda",
                "NA memory / window memory (%)",
                fig_dir / "na-vs-window-memory.png",
            )

    hist = data.history(frame, dirs) if len(dirs) > 1 else None
    hist_fig = None
    if hist is not None and not hist.empty:
        drawn = figures.history(hist, dirs, fig_dir / "history.png")
        hist_fig = "figures/" + drawn if drawn else None

    claims = [{"source": d, "claims": data.load_claims(d)} for d in dirs]
    rank = {"FAIL": 0, "INCONCLUSIVE": 1, "PASS": 2, "SKIP": 3}
    for c in claims:
        c["counts"] = data.verdict_counts(c["claims"]) if c["claims"] is not None else None
        if c["claims"]:  # failures first
            c["claims"] = sorted(
                ({k: v.get(k) for k in CLAIM_FIELDS} for v in c["claims"]),
                key=lambda v: (rank.get(str(v["verdict"]), 4), str(v["id"])),
            )
    accuracy = frame[frame["kind"] == "accuracy"]
    not_ok = frame[frame["status"] != "ok"]

    context = {
        "dirs": dirs,
        "latest": dirs[-1],
        "pages": PAGES,
        "status_counts": data.status_counts(frame),
        "not_ok": _records(
            not_ok, ["source", "case_id", "kind", "target", "backend", "resolution", "status", "error"]
        ),
        "latency_groups": latency_groups,
        "memory_groups": memory_groups,
        "latency_kernel_groups": latency_kernel_groups,
        "memory_kernel_groups": memory_kernel_groups,
        "pairs": _records(
            pairs,
            [
                "backend",
                "machine",
                "dtype",
                "kernel_size",
                "resolution",
                "latency_ms_na",
                "latency_iqr_ms_na",
                "latency_ms_window",
                "latency_iqr_ms_window",
                "latency_ratio",
                "relative_speed_pct",
                "relative_memory_pct",
            ],
        )
        if not pairs.empty
        else [],
        "ratio_figs": ratio_figs,
        "paper": paper,
        "models": data.model_table(latest),
        "claims": claims,
        "verdicts": data.VERDICTS,
        "accuracy": _records(
            accuracy,
            [
                "source",
                "target",
                "checkpoint",
                "resolution",
                "status",
                "top1",
                "top5",
                "count",
                "throughput",
                "error",
            ],
        ),
        "paper_models": paper["table3"]["models"],
        "envs": [
            {"source": d + (f" (writer {e['writer']})" if e["writer"] else ""), "env": e["env"]}
            for d in dirs
            for e in data.load_envs(d, frame)
        ],
        "history": hist,
        "history_fig": hist_fig,
    }
    env = _environment()
    for page, _ in PAGES:
        html = env.get_template(page).render(page=page, **context)
        (out / page).write_text(html, encoding="utf-8")
    return out / "index.html"
