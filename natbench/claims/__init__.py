"""The papers' claims as data (natbench/claims/data/*.toml), judged from natbench's own results."""

from natbench.claims.judge import ERROR, FAIL, INCONCLUSIVE, PASS, SKIP, VERDICTS, Verdict, judge, judge_claim
from natbench.claims.scaling import PowerFit, fit_power_law
from natbench.claims.schema import KINDS, TOLERANCE_MODES, Claim, ClaimError, load_claims

__all__ = [
    "ERROR",
    "FAIL",
    "INCONCLUSIVE",
    "KINDS",
    "PASS",
    "SKIP",
    "TOLERANCE_MODES",
    "VERDICTS",
    "Claim",
    "ClaimError",
    "PowerFit",
    "Verdict",
    "fit_power_law",
    "judge",
    "judge_claim",
    "load_claims",
]
