"""Check a list of cases' targets before anything runs (used by `natbench run` and by sweeps)."""

from __future__ import annotations

from natbench.measure.spec import CaseSpec


def validate_targets(specs: list[CaseSpec]) -> None:
    """Model names must exist in natbench.models (checked only when a preset has model cases)."""
    names = sorted({s.target for s in specs if s.kind == "model"})
    if not names:
        return
    try:
        from natbench.models import list_models
    except ImportError:
        return  # each model case then reports the import error in its row
    known = set(list_models())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"unknown target(s) {unknown}; targets are na, window, full, "
            f"package.module:function or one of: {', '.join(sorted(known))}"
        )
