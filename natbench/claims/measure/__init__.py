"""What natbench measured for a claim: one small module per measure method, sharing row selection (rows.py),
noise bands (bands.py) and group labels (groups.py). Each method returns an Outcome: measurements with bands,
a skip (cannot run here) or an error (natbench got something wrong)."""

from __future__ import annotations

from natbench.claims.measure.counted_flops import measure_counted_flops
from natbench.claims.measure.model_info import backbone_shapes, measure_backbone_shapes, measure_model_info
from natbench.claims.measure.outcome import Measurement, Outcome, error, skip
from natbench.claims.measure.rate import measure_rate
from natbench.claims.measure.ratio import measure_ratio
from natbench.claims.measure.row import measure_row, measure_top1, top1_band
from natbench.claims.measure.rows import select
from natbench.claims.measure.scaling import measure_scaling
from natbench.claims.schema import Claim


def measure_unmeasurable(claim: Claim, df) -> Outcome:
    return skip(claim.measure.get("category", "not measurable by natbench"), claim.measure["reason"])


METHOD_FUNCS = {
    "model_info": measure_model_info,
    "backbone_shapes": measure_backbone_shapes,
    "row": measure_row,
    "top1": measure_top1,
    "ratio": measure_ratio,
    "scaling": measure_scaling,
    "rate": measure_rate,
    "counted_flops": measure_counted_flops,
    "unmeasurable": measure_unmeasurable,
}


def measure(claim: Claim, df) -> Outcome:
    try:
        return METHOD_FUNCS[claim.method](claim, df)
    except Exception as exc:  # a bug in the claims code itself is natbench's error too
        return error(f"measuring {claim.id} raised {type(exc).__name__}: {exc}")


__all__ = ["Measurement", "Outcome", "backbone_shapes", "error", "measure", "select", "skip", "top1_band"]
