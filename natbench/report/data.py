"""Tables the report shows, computed from result directories with pandas (no HTML here)."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from natbench.results import RESULTS_FILE, has_rows, read_envs

CLAIMS_FILE = "claims.json"
VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE", "SKIP")
# what must match for an NA case and a window case to be compared
# machine too: rows from two machines must never be paired or drawn as one series
PAIR_KEYS = [
    "device",
    "machine",
    "dtype",
    "mode",
    "batch",
    "resolution",
    "kernel_size",
    "heads",
    "head_dim",
]
# one figure per configuration; inside it, one series per backend and machine (never averaged across)
FIGURE_KEYS = ["device", "dtype", "mode", "batch", "heads", "head_dim"]
SERIES_KEYS = ["machine", *FIGURE_KEYS]


@lru_cache(maxsize=1)
def paper_figures() -> dict[str, Any]:
    """Published numbers drawn beside ours, from the claims registry (natbench/claims/data); `registry` lists
    the claim ids they came from."""
    from natbench.claims.figures import paper_figures as from_registry

    return from_registry()


def load_results(dirs: list[str | Path]) -> pd.DataFrame:
    from natbench.results import load

    for d in dirs:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"results directory {d} does not exist")
        if not has_rows(d):
            raise FileNotFoundError(
                f"{d} has no {RESULTS_FILE} nor rows/*.jsonl; pass a directory made by natbench sweep/run"
            )
    frame = load([str(d) for d in dirs])
    # the series key: the machine column, else (older rows) the device name, else the device
    frame["machine"] = frame["machine"].fillna(frame["device_name"]).fillna(frame["device"])
    for col in (
        "batch",
        "resolution",
        "kernel_size",
        "dilation",
        "heads",
        "head_dim",
        "tokens",
        "latency_ms",
        "latency_iqr_ms",
        "peak_mem_bytes",
        "macs",
        "flops",
        "params",
        "throughput",
        "top1",
        "top5",
        "count",
    ):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def load_claims(directory: str | Path) -> list[dict[str, Any]] | None:
    """DIR/claims.json (a list of verdict objects), or None when the directory has none."""
    path = Path(directory) / CLAIMS_FILE
    if not path.is_file():
        return None
    claims = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(claims, list):
        raise ValueError(f"{path} must hold a JSON list of claim verdicts, got {type(claims).__name__}")
    return claims


def load_envs(directory: str | Path, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each writer's environment record of DIR ({"writer", "env"}), else the env of the directory's first row."""
    envs = read_envs(directory)
    if envs:
        return [{"writer": w, "env": e} for w, e in envs.items()]
    rows = [e for e in frame.loc[frame["source"] == str(directory), "env"] if isinstance(e, dict)]
    return [{"writer": "first row", "env": rows[0]}] if rows else [{"writer": None, "env": None}]


def ok(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    return frame[(frame["kind"] == kind) & (frame["status"] == "ok")].copy()


def series_label(row: pd.Series) -> str:
    if row["target"] == "na":
        return f"NA {row['backend']}"
    return str(row["target"])


def fit(tokens, values):
    """The claims' power-law fit (natbench.measure.stats.fit_power_law: exponent and its 95 % interval) of
    value ~ tokens**b over the claims' MIN_SIZES largest sizes; None with fewer sizes."""
    from natbench.claims.measure.scaling import MIN_SIZES
    from natbench.measure.stats import fit_power_law

    pairs = [(t, v) for t, v in zip(tokens, values, strict=True) if t > 0 and v > 0 and not math.isnan(v)]
    sizes = sorted({t for t, _ in pairs})[-MIN_SIZES:]
    pairs = [p for p in pairs if p[0] in sizes]
    if len(sizes) < MIN_SIZES:
        return None
    return fit_power_law([p[0] for p in pairs], [p[1] for p in pairs], min_sizes=MIN_SIZES)


def fit_exponent(tokens, values) -> float | None:
    """b of `fit`, or None."""
    result = fit(tokens, values)
    return None if result is None else result.exponent


def _ops_with(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    ops = ok(frame, "op")
    ops = ops[ops[value].notna() & ops["resolution"].notna()].copy()
    if not ops.empty:
        ops["tokens"] = ops["tokens"].fillna(ops["resolution"] ** 2)
        ops["series"] = ops.apply(series_label, axis=1)
        # several machines in one figure: each backend once per machine
        several = ops.groupby(FIGURE_KEYS, dropna=False)["machine"].transform("nunique") > 1
        ops.loc[several, "series"] = (
            ops.loc[several, "series"] + " · " + ops.loc[several, "machine"].astype(str)
        )
    return ops


def _series(data: pd.DataFrame, x: str, value: str, fit_x: str) -> list[dict[str, Any]]:
    """One line per backend: median `value` per `x`, and the exponent b of value ~ fit_x**b."""
    series = []
    for name, s in data.groupby("series"):
        machine = str(s["machine"].iloc[0])
        s = s.groupby(x, as_index=False).agg(fit=(fit_x, "first"), value=(value, "median"))
        power = fit(s["fit"], s["value"])
        series.append(
            {
                "name": name,
                "machine": machine,
                "x": s[x].tolist(),
                "value": s["value"].tolist(),
                "exponent": None if power is None else power.exponent,
                "ci": None if power is None else (power.ci_low, power.ci_high),
            }
        )
    return series


def scaling_groups(frame: pd.DataFrame, value: str) -> list[dict[str, Any]]:
    """`value` against resolution: one log-log figure per device/dtype/mode/kernel with two or more sizes.

    Full attention has no kernel size, so it joins every kernel's figure as the quadratic reference.
    Exponents are fitted against tokens (resolution squared).
    """
    ops = _ops_with(frame, value)
    groups = []
    for (_, dtype, mode, *_), cfg in [] if ops.empty else ops.groupby(FIGURE_KEYS, dropna=False):
        full = cfg[cfg["target"] == "full"]
        local = cfg[cfg["target"] != "full"]
        counts = local.groupby("kernel_size")["resolution"].nunique()
        kernels = [k for k, n in sorted(counts.items()) if n >= 2] or ([None] if len(full) else [])
        for k in kernels:
            data = pd.concat([local[local["kernel_size"] == k], full])
            title = f"{_where(cfg)} {dtype} {mode}" + (f", kernel/window {int(k)}" if k is not None else "")
            groups.append(
                {
                    "title": title,
                    "kernel_size": k,
                    "x": "resolution",
                    "fit": "tokens",
                    "series": _series(data, "resolution", value, "tokens"),
                }
            )
    return groups


def _where(cfg: pd.DataFrame) -> str:
    """A figure's machine in its title when it has one, else its device (the series then name theirs)."""
    machines = cfg["machine"].dropna().unique()
    return str(machines[0]) if len(machines) == 1 else str(cfg["device"].iloc[0])


def kernel_groups(frame: pd.DataFrame, value: str) -> list[dict[str, Any]]:
    """`value` against kernel (window) size at one resolution, where two or more sizes were measured."""
    ops = _ops_with(frame, value)
    ops = ops[(ops["target"] != "full") & ops["kernel_size"].notna()] if not ops.empty else ops
    groups = []
    keys = [*FIGURE_KEYS, "resolution"]
    for (_, dtype, mode, *_, res), cfg in [] if ops.empty else ops.groupby(keys, dropna=False):
        if cfg["kernel_size"].nunique() < 2:
            continue
        series = _series(cfg, "kernel_size", value, "kernel_size")
        if value == "latency_ms":
            key = dict(zip(keys, (cfg[k].iloc[0] for k in keys), strict=True))
            series += _interleaved_series(frame, key, cfg["machine"].nunique() > 1)
        groups.append(
            {
                "title": f"{_where(cfg)} {dtype} {mode}, {int(res)}x{int(res)} map",
                "resolution": res,
                "x": "kernel_size",
                "fit": "kernel_size",
                "series": series,
            }
        )
    return groups


def _same(a, b) -> bool:
    from natbench.claims.measure.rows import is_missing

    return (is_missing(a) and is_missing(b)) or a == b


def _interleaved_series(frame: pd.DataFrame, key: dict[str, Any], several: bool) -> list[dict[str, Any]]:
    """The kernel sizes a kind="group" row timed interleaved in the same processes (natbench.measure.group) at
    the figure's shape: their medians, and the exponent the claims fit from those processes (paired)."""
    from natbench.claims.measure.scaling import MIN_SIZES
    from natbench.measure.group import per_process
    from natbench.measure.stats import fit_power_law_paired

    rows = ok(frame, "group")
    ops = set(ok(frame, "op")["target"])  # a group of models' kernel sizes is no attention op's series
    out = []
    for r in rows[rows["group_axis"] == "kernel_size"].to_dict("records"):
        if r.get("target") not in ops or not all(_same(r.get(k), v) for k, v in key.items()):
            continue
        order = sorted(range(len(r["group_values"])), key=lambda i: r["group_values"][i])
        keep = order[-MIN_SIZES:]
        power = (
            fit_power_law_paired(
                [r["group_values"][i] for i in keep], per_process(r, keep), min_sizes=MIN_SIZES
            )
            if len(keep) >= MIN_SIZES
            else None
        )
        name = f"{series_label(pd.Series(r))} (interleaved)" + (f" · {r['machine']}" if several else "")
        out.append(
            {
                "name": name,
                "machine": str(r.get("machine")),
                "x": [r["group_values"][i] for i in order],
                "value": [r["member_ms"][i] for i in order],
                "exponent": None if power is None else power.exponent,
                "ci": None if power is None else (power.ci_low, power.ci_high),
            }
        )
    return out


def na_vs_window(frame: pd.DataFrame) -> pd.DataFrame:
    """Every NA case next to the window-attention case with the same shape: latency and memory ratios."""
    ops = ok(frame, "op")
    na = ops[(ops["target"] == "na") & (ops["dilation"].fillna(1) == 1)]
    win = ops[ops["target"] == "window"]
    if na.empty or win.empty:
        return pd.DataFrame()
    keep = [*PAIR_KEYS, "latency_ms", "latency_iqr_ms", "peak_mem_bytes"]
    win = win[keep].drop_duplicates(PAIR_KEYS, keep="last")
    pairs = na[[*keep, "backend"]].merge(win, on=PAIR_KEYS, suffixes=("_na", "_window"))
    if pairs.empty:
        return pairs
    pairs["latency_ratio"] = pairs["latency_ms_na"] / pairs["latency_ms_window"]
    pairs["relative_speed_pct"] = 100 * pairs["latency_ms_window"] / pairs["latency_ms_na"]
    pairs["relative_memory_pct"] = 100 * pairs["peak_mem_bytes_na"] / pairs["peak_mem_bytes_window"]
    return pairs.sort_values(["backend", "kernel_size", "resolution"]).reset_index(drop=True)


def model_table(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One line per measured model configuration with the paper's Table 3 numbers beside it."""
    models = ok(frame, "model")
    acc = ok(frame, "accuracy")
    paper = paper_figures()["table3"]["models"]
    rows = []
    for _, r in models.iterrows():
        # the paper's top-1 is the exact model: leave out rows run without the RPB
        exact = acc["backend"].fillna("") != "natten-drop-rpb"
        top1 = acc.loc[(acc["target"] == r["target"]) & exact, "top1"].dropna()
        rows.append(
            {
                "model": r["target"],
                "resolution": r["resolution"],
                "batch": r["batch"],
                "device_name": r["machine"],
                "dtype": r["dtype"],
                "mode": r["mode"],
                "backend": r["backend"],
                "params_m": r["params"] / 1e6 if pd.notna(r["params"]) else None,
                "gmacs": r["macs"] / 1e9 if pd.notna(r["macs"]) else None,
                "throughput": r["throughput"],
                "latency_ms": r["latency_ms"],
                "memory_gb": r["peak_mem_bytes"] / 1e9 if pd.notna(r["peak_mem_bytes"]) else None,
                "top1": float(top1.iloc[-1]) if len(top1) else None,
                "paper": paper.get(str(r["target"])),
            }
        )
    return rows


def history(frame: pd.DataFrame, dirs: list[str]) -> pd.DataFrame:
    """Median latency per ok case and machine (rows) in each result set (columns, in the order given)."""
    timed = frame[(frame["status"] == "ok") & frame["latency_ms"].notna()]
    if timed.empty:
        return pd.DataFrame()
    # a case on two machines is two histories
    timed = timed.assign(case=timed["case_id"] + " @ " + timed["machine"].astype(str))
    table = timed.pivot_table(index="case", columns="source", values="latency_ms", aggfunc="last")
    return table.reindex(columns=[str(d) for d in dirs])


def status_counts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows, kinds, statuses, machines and unreadable (malformed) lines per result set."""
    out = []
    malformed = frame.attrs.get("malformed") or []
    for source, part in frame.groupby("source", sort=False):
        out.append(
            {
                "source": source,
                "rows": len(part),
                "statuses": part["status"].value_counts().to_dict(),
                "kinds": part["kind"].value_counts().to_dict(),
                "machines": sorted(str(m) for m in part["machine"].dropna().unique()),
                "malformed": [m for m in malformed if m.startswith(str(Path(source)) + "/")],
            }
        )
    return out


def verdict_counts(claims: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        counts[str(c.get("verdict"))] = counts.get(str(c.get("verdict")), 0) + 1
    return counts
