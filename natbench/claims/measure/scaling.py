"""`scaling`: log-log fit of `y` against `x` per group of `per` columns over the `largest` distinct x; one
verdict per group. The fitter is natbench.measure.stats.fit_power_law; a latency fit whose sizes were also
timed interleaved in the same processes (a kind="group" row, natbench.measure.group) is fitted from those
processes instead (fit_power_law_paired), where the machine's drift cancels."""

from __future__ import annotations

from natbench.claims.measure.groups import filled, label, with_machine
from natbench.claims.measure.outcome import Measurement, Outcome, skip
from natbench.claims.measure.rows import is_missing, select
from natbench.claims.schema import Claim

DEFAULT_PER = [
    "device",
    "device_name",
    "backend",
    "kernel",
    "dtype",
    "mode",
    "batch",
    "kernel_size",
    "dilation",
    "heads",
    "head_dim",
]


PROCESS_VALUES = {"latency_ms": "latency_process_ms", "peak_mem_bytes": "peak_mem_process_bytes"}
MIN_SIZES = 5  # fewer sizes leave a fit with too few degrees of freedom for an honest interval


def fit(g, x_name: str, y_name: str):
    """(exponent, ci_low, ci_high, description) of a power-law fit of the rows `g`: per-process values where
    the rows have them (the interval is then a bootstrap over processes), one row read from several results
    directories counted once."""
    from natbench.measure.stats import fit_power_law

    per_process = PROCESS_VALUES.get(y_name)
    ys = []
    for row in g.to_dict("records"):
        values = row.get(per_process) if per_process else None
        ys.append(list(values) if isinstance(values, (list, tuple)) and values else float(row[y_name]))
    groups = [f"{c}@{t}" for c, t in zip(g["case_id"], g["timestamp"], strict=True)]
    f = fit_power_law(list(g[x_name].astype(float)), ys, groups=groups, min_sizes=MIN_SIZES)
    return (
        f.exponent,
        f.ci_low,
        f.ci_high,
        f"{f.n_sizes} sizes, {f.processes} processes, interval: {f.method}",
    )


def interleaved(df, g, x_name: str, y_name: str) -> tuple[list[float], list[list[float]]] | None:
    """(sizes, per-process values [process][size]) when kind="group" rows of g's machine timed every case of
    `g` in the same processes; None otherwise (or for anything but latency)."""
    from natbench.measure.group import per_process

    if y_name != "latency_ms" or df is None or "group_of" not in df.columns:
        return None
    x_of = {str(c): float(x) for c, x in zip(g["case_id"], g[x_name], strict=True)}

    def machine(v):
        return "-" if is_missing(v) else v

    machines = {machine(v) for v in g["machine"]} if "machine" in g.columns else None
    found, seen = [], set()
    for row in df[(df["kind"] == "group") & (df["status"] == "ok")].to_dict("records"):
        members = [str(c) for c in row.get("group_of") or []]
        if not set(x_of) <= set(members) or (
            machines is not None and machine(row.get("machine")) not in machines
        ):
            continue
        key = (row["case_id"], row.get("timestamp"))  # one row read from several results directories
        if key in seen:
            continue
        seen.add(key)
        found += per_process(row, [members.index(c) for c in x_of])
    return (list(x_of.values()), found) if found else None


def measure_scaling(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return why
    x_name, y_name = m.get("x", "tokens"), m["y"]
    per = with_machine(list(m.get("per", DEFAULT_PER)), df)
    largest, min_points = m.get("largest", MIN_SIZES), max(m.get("min_points", MIN_SIZES), MIN_SIZES)
    rows = filled(rows, per)
    if x_name == "tokens":  # custom-case rows carry no tokens: a square map of `resolution`
        rows["tokens"] = [
            t if not is_missing(t) else (r * r if not is_missing(r) else None)
            for t, r in zip(rows["tokens"], rows["resolution"], strict=True)
        ]
    rows = rows[rows[x_name].map(lambda v: not is_missing(v) and float(v) > 0)]
    rows = rows[rows[y_name].map(lambda v: not is_missing(v) and float(v) > 0)]
    if len(rows) == 0:
        return skip("no matching rows", f"no rows with positive {x_name} and {y_name}")
    fittable, notes = [], []
    for key, g in rows.groupby(per, sort=True, dropna=False):
        values = dict(zip(per, key if isinstance(key, tuple) else (key,), strict=True))
        xs = sorted({float(v) for v in g[x_name]})
        if len(xs) < min_points:
            notes.append(f"{label(values, set(per))}: only {len(xs)} distinct {x_name} values")
            continue
        fittable.append((values, g, set(xs[-largest:])))
    varying = {c for c in per if len({str(v[c]) for v, _, _ in fittable}) > 1}
    out = []
    for values, g, keep in fittable:
        g = g[g[x_name].map(lambda v, keep=keep: float(v) in keep)]
        paired = interleaved(df, g, x_name, y_name)
        if paired is not None:
            from natbench.measure.stats import fit_power_law_paired

            f = fit_power_law_paired(paired[0], paired[1], min_sizes=MIN_SIZES)
            b, lo, hi = f.exponent, f.ci_low, f.ci_high
            pts = f"{f.n_sizes} sizes timed interleaved in {f.processes} processes, interval: {f.method}"
        else:
            b, lo, hi, pts = fit(g, x_name, y_name)
        span = f"{int(min(keep)):,}..{int(max(keep)):,}"
        prov = (
            f"log-log fit of {y_name} vs {x_name} over the {len(keep)} largest {x_name} ({span}; {pts}): "
            f"exponent {b:.3f}, 95 % CI [{lo:.3f}, {hi:.3f}]"
        )
        out.append(
            Measurement(
                label(values, varying),
                b,
                lo,
                hi,
                prov,
                [str(c) for c in g["case_id"]],
                "95 % CI of the fitted exponent",
            )
        )
    if not out:
        return skip(
            "too few sizes",
            f"no group has the {min_points} distinct {x_name} values a fit needs: " + "; ".join(notes),
        )
    return Outcome(measurements=out, expand=True, notes=notes)
