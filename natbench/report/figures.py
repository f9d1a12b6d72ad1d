"""Report figures drawn with matplotlib's object API on the Agg canvas (no display, no global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

DPI = 100


def _save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    return path.name


LINESTYLES = ("-", "--", "-.", ":")  # one per machine, so that equal curves of two machines both show


def _styles(machines) -> dict[str, str]:
    return {m: LINESTYLES[i % len(LINESTYLES)] for i, m in enumerate(sorted(set(machines)))}


XLABELS = {"resolution": "feature map side (tokens = side^2)", "kernel_size": "kernel / window size"}


def scaling(group: dict[str, Any], ylabel: str, path: Path, scale: float = 1.0) -> str:
    """Log-log value vs resolution or kernel size, one line per backend and machine, fitted exponent in
    the legend."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    styles = _styles(s["machine"] for s in group["series"])
    for s in group["series"]:
        label = s["name"] + (f" (~{group['fit']}^{s['exponent']:.2f})" if s["exponent"] is not None else "")
        ax.plot(s["x"], [v * scale for v in s["value"]], styles[s["machine"]], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(XLABELS[group["x"]])
    ax.set_ylabel(ylabel)
    ax.set_title(group["title"])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def na_vs_window(
    pairs: pd.DataFrame, paper: dict[str, Any], column: str, paper_key: str, ylabel: str, path: Path
) -> str:
    """Our NA-vs-window percentage per backend and kernel beside the paper's curve(s)."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    res = paper["resolutions"]
    ax.plot(res[: len(paper[paper_key])], paper[paper_key], "k--", marker="s", label=f"paper ({paper_key})")
    if paper_key == "speed_tiled_cuda":
        plain = paper["speed_plain_pytorch"]
        ax.plot(res[: len(plain)], plain, "k:", marker="x", label="paper (speed_plain_pytorch)")
    styles = _styles(pairs["machine"])
    for (backend, k, machine), part in pairs.dropna(subset=[column]).groupby(
        ["backend", "kernel_size", "machine"]
    ):
        part = part.groupby("resolution", as_index=False)[column].median()
        if len(part) < 2:  # one size only: the kernel-size figure shows it
            continue
        ax.plot(
            part["resolution"],
            part[column],
            styles[machine],
            marker="o",
            label=f"ours: NA {backend}, k={int(k)}, {machine}",
        )
    ax.axhline(100, color="gray", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("feature map side")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def ratio_vs_kernel(pairs: pd.DataFrame, column: str, ylabel: str, path: Path) -> str | None:
    """Our NA-vs-window percentage against kernel size, one line per backend and resolution; None if no sweep."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    drawn = 0
    styles = _styles(pairs["machine"])
    for (backend, res, machine), part in pairs.dropna(subset=[column]).groupby(
        ["backend", "resolution", "machine"]
    ):
        part = part.groupby("kernel_size", as_index=False)[column].median()
        if len(part) >= 2:
            ax.plot(
                part["kernel_size"],
                part[column],
                styles[machine],
                marker="o",
                label=f"NA {backend}, {int(res)}x{int(res)}, {machine}",
            )
            drawn += 1
    if not drawn:
        return None
    ax.axhline(100, color="gray", lw=0.8)
    ax.set_xlabel("kernel size = window size")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def history(table: pd.DataFrame, labels: list[str], path: Path) -> str | None:
    """Each case's latency relative to its first measured set, across the sets in the order given."""
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    x = list(range(len(labels)))
    drawn = 0
    for _, row in table.iterrows():
        values = row.tolist()
        first = next((v for v in values if pd.notna(v)), None)
        if first and sum(pd.notna(v) for v in values) >= 2:  # a case seen once has no history
            drawn += 1
            ax.plot(x, [v / first if pd.notna(v) else float("nan") for v in values], marker="o", alpha=0.6)
    if not drawn:
        return None
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"set {i + 1}" for i in x])
    ax.set_ylabel("latency / latency in first set")
    ax.set_title("latency per case across result sets")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
