"""Row selection: the rows of a results table that can measure a claim, or why none (SKIP) or why that is
natbench's fault (ERROR: every candidate row errored, or a row the claim's preset defines is missing)."""

from __future__ import annotations

import fnmatch
import math
from functools import lru_cache
from typing import Any

from natbench.claims.measure.outcome import Outcome, error, skip
from natbench.claims.schema import Claim

FUSED_NATTEN = ("natten:cutlass-*", "natten:hopper-*", "natten:blackwell-*", "natten:fna*")
# statuses that mean "cannot run here" (backend/device/shape, memory, time limit), not "natbench is wrong"
CANNOT_RUN = ("unsupported", "oom", "skipped", "timeout")
ACCURACY_HINT = (
    "needs ImageNet at --data and the checkpoints: no accuracy rows in the results "
    "(run natbench accuracy --data DIR --results DIR)"
)


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def matches(series, want):
    wants = want if isinstance(want, list) else [want]
    mask = None
    for w in wants:
        if isinstance(w, str) and any(c in w for c in "*?["):
            m = series.map(lambda v, w=w: isinstance(v, str) and fnmatch.fnmatchcase(v, w))
        else:
            m = series.map(lambda v, w=w: not is_missing(v) and v == w)
        mask = m if mask is None else (mask | m)
    return mask.astype(bool)


def _needs(claim: Claim) -> tuple[str, str]:
    """(category, prefix) of a skip for a claim that needs a GPU."""
    req = claim.requires
    if req.get("device") != "cuda":
        return "", ""
    if "gpu" in req:
        return f"needs an NVIDIA {req['gpu']}", f"needs an NVIDIA {req['gpu']} GPU: "
    if req.get("libnatten"):
        return "needs CUDA + libnatten", "needs CUDA and natten's compiled kernels (libnatten): "
    return "needs CUDA", "needs CUDA: "


def _run_hint(claim: Claim) -> str:
    if not claim.presets:
        return ""
    gpu = " on a machine with a GPU" if claim.requires.get("device") == "cuda" else ""
    return f" (run natbench sweep --preset {claim.presets[0]}{gpu})"


@lru_cache(maxsize=32)
def _preset_specs(name: str) -> tuple[dict, ...]:
    """The result columns each case of a shipped preset determines (empty when it cannot be expanded)."""
    try:
        from natbench.measure.case import spec_row
        from natbench.sweep.preset import expand, load_preset

        return tuple(spec_row(s) for s in expand(load_preset(name)))
    except Exception:  # a preset that cannot be expanded defines nothing checkable here
        return ()


def _defined_by_presets(claim: Claim, where: dict[str, Any]) -> list[dict]:
    import pandas as pd

    out = []
    for name in claim.presets:
        specs = pd.DataFrame(list(_preset_specs(name)))
        if len(specs) == 0:
            continue
        mask = pd.Series(True, index=specs.index)
        for key, want in where.items():
            if key in specs.columns:
                mask &= matches(specs[key], want)
            elif key in ("kernel",):  # what ran is unknown before the run
                continue
            else:
                mask &= False
        out += [dict(r, preset=name) for r in specs[mask].to_dict("records")]
    return out


def _missing(claim: Claim, all_rows, where: dict[str, Any], side: str) -> Outcome:
    """No row matches `where`: natbench's fault when the preset defines such a case and its sweep ran."""
    label = f"{side + ' ' if side else ''}rows with " + ", ".join(f"{k} = {v!r}" for k, v in where.items())
    defined = _defined_by_presets(claim, where)
    if defined:
        # the sweep ran this target on this backend (other sizes) but not these cases: it lost them
        ran = {(t, b) for t, b in zip(all_rows["target"], all_rows["backend"], strict=True)}
        lost = [d for d in defined if (d["target"], d["backend"]) in ran]
        if lost:
            return error(
                f"no {label}, yet preset {lost[0]['preset']} defines {len(defined)} such case(s) (e.g. "
                f"{lost[0]['case_id']}) and its sweep ran {lost[0]['target']} on {lost[0]['backend']}: "
                "the sweep lost them"
            )
        return skip(
            "results predate the preset",
            f"no {label}: preset {defined[0]['preset']} now defines them; rerun natbench sweep --preset "
            f"{defined[0]['preset']}",
        )
    cat, needs = _needs(claim)
    if "kernel" in where and claim.requires.get("libnatten"):
        return skip(
            "needs CUDA + libnatten", "needs natten's compiled kernels: no row ran a fused natten kernel"
        )
    if where.get("kind") == "accuracy":
        return skip("needs ImageNet + checkpoints", ACCURACY_HINT)
    return skip(cat or "no matching rows", f"{needs}no {label}{_run_hint(claim)}")


def _not_ok(claim: Claim, rows) -> Outcome:
    """Every candidate row has a status other than ok."""
    errored = rows[~rows["status"].isin(CANNOT_RUN)]
    counts = ", ".join(f"{n} {s}" for s, n in rows["status"].value_counts().items())
    if len(errored):
        first = errored.iloc[0]
        return error(
            f"every candidate row failed ({counts}); e.g. {first.get('case_id')}: {first.get('error')}"
        )
    reasons = sorted({str(e) for e in rows["error"].dropna()}) or ["no reason recorded"]
    return skip("cannot run here", f"cannot run here ({counts}): {reasons[0]}")


def select(
    df, claim: Claim, where: dict[str, Any] | None, side: str = "", ok_only: bool = True
) -> tuple[Any, Outcome | None]:
    """Rows of `df` that can measure `claim` (its presets, requires, `where`, status ok), or an Outcome saying
    why none (SKIP: cannot run here; ERROR: natbench lost or broke them). `ok_only=False` keeps rows of every
    status (a first cut that numerator / denominator selections refine)."""
    req = claim.requires
    where = dict(where or {})
    cat, needs = _needs(claim)
    if df is None or len(df) == 0:
        if req.get("imagenet") or req.get("checkpoints"):
            return None, skip("needs ImageNet + checkpoints", ACCURACY_HINT)
        if claim.presets:
            return None, skip(cat or "no results", f"{needs}no results to judge{_run_hint(claim)}")
        return None, skip("no results", f"{needs}no results to judge: pass --results DIR")
    rows = df
    if claim.presets:
        rows = rows[matches(rows["preset"], list(claim.presets))]
        if len(rows) == 0:
            return None, skip(
                cat or "no results",
                f"{needs}no results for preset {' / '.join(claim.presets)}" + _run_hint(claim),
            )
    device = req.get("device", "any")
    if device != "any":
        kept = rows[rows["device"] == device]
        if len(kept) == 0:
            return None, skip(
                cat or f"needs {device}", f"{needs}no rows measured on {device}" + _run_hint(claim)
            )
        rows = kept
    if "gpu" in req:
        kept = rows[rows["device_name"].map(lambda n: isinstance(n, str) and req["gpu"].lower() in n.lower())]
        if len(kept) == 0:
            names = sorted({str(n) for n in rows["device_name"].dropna()}) or ["none"]
            return None, skip(cat, f"{needs}results are from {', '.join(names)}")
        rows = kept
    if "dtype" in req:
        kept = rows[matches(rows["dtype"], req["dtype"])]
        if len(kept) == 0:
            return None, skip(
                f"needs {req['dtype']}",
                f"needs {req['dtype']} rows (results have {sorted(set(rows['dtype'].dropna()))})",
            )
        rows = kept
    all_rows = rows
    for key, want in where.items():
        if key == "kernel":
            continue  # what ran is only known for rows that ran
        kept = rows[matches(rows[key], want)]
        if len(kept) == 0:
            return None, _missing(claim, all_rows, where, side)
        rows = kept
    if not ok_only:
        return rows, None
    ok = rows[rows["status"] == "ok"]
    if len(ok) == 0:
        return None, _not_ok(claim, rows)
    if "kernel" in where:
        kept = ok[matches(ok["kernel"], where["kernel"])]
        if len(kept) == 0:
            if claim.requires.get("libnatten"):
                return None, skip(
                    "needs CUDA + libnatten",
                    "needs natten's compiled kernels: no row ran a fused natten kernel ("
                    + ", ".join(FUSED_NATTEN)
                    + ")",
                )
            ran = sorted({str(k) for k in ok["kernel"].dropna()})
            return None, skip("no matching rows", f"no rows ran kernel {where['kernel']!r} (ran: {ran})")
        ok = kept
    return ok, None
