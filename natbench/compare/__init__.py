"""`natbench compare BASE NEW`: per-case ratios of two result sets; a regression must be real and large.

A case regresses when NEW is worse than BASE by more than the threshold (ratio of medians; 5 % by default, so
that a 10 % slowdown is caught although noise scatters its measured ratio around 1.10) AND a one-sided
Mann-Whitney U test (scipy.stats.mannwhitneyu) over the per-process values (`latency_process_ms`,
`peak_mem_process_bytes`: one value per fresh process) says NEW is worse at level alpha. Rows written before
per-process values existed fall back to their within-run samples (latency), or to the threshold alone, and
the line says so. Exit codes: 0 no regression, 1 regression(s), 2 bad input or no case comparable.

Between runs (between_runs): with 20 or more cases, a change must also clear a bar set by the runs' own scatter
and the number of cases, so that unchanged code flags a case with probability about alpha (with 2-19 cases, by
the number of cases alone); the header says the
smallest change of one case that then shows. `--per-case` judges each case on its own test instead.

Several baselines (`natbench compare MON TUE WED TODAY`, oldest first): each case's baseline pools the
per-process values of its runs on NEW's machine and takes the median of their medians, so that the test sees
the baseline's between-run noise; a regression (improvement) must also be beyond the worst (best) baseline run,
and the bar weighs the case's own offsets between those runs (case_offsets, moderated toward the common scatter:
case_tau). Some cases move further between sweeps than others (7 cpu-quick sweeps on the VM: SD 20 % for the
gather reference NA at 14x14, 6 % for the median case). One baseline cannot show a case's own noise.

Rows of short runs carry the machine's drift floor (`latency_drift_cv`, from `natbench noise`): two such runs
differ by it even when nothing changed, so their change must also exceed 1.96 x the floors' root sum of squares.

The sentinel: rows timed with it (natbench.measure.timer) carry each process's latency relative to a matmul
run between its timed blocks (`latency_rel_process`). Where both rows carry it from the same sentinel,
`--normalize auto` (the default) judges a case on those values put back at BASE's sentinel speed (at_sentinel):
each block and its sentinel met the same moment of the machine, so a busy spell cancels per block. It cancels
fully only for work slowed as a matmul is (the fused NA kernel slows about twice as much, shifted window
attention on large maps less); what it leaves between runs is in the runs' scatter that the bar below measures.
On the 2-core VM (a busy spell): a case doing 10 % more matmuls, in runs one after the other, was flagged 10/10
in three sets relative to the sentinel (A/A 0/10) and 5/10 by the calibrations (A/A 2/10); four cpu-quick sweeps
of the same measurement code compared both ways (12 comparisons, with the bar) flagged one case, NA at 336x336, 14 % slower raw in one
sweep, both ways, relative to the sentinel, and none by the calibrations, which let a change of one case show
only beyond 74 % (median case) against 36 %. `--normalize calibrations` judges as below, `off` raw times. The
line of a case judged on relative times gives the raw values and the factor the machine's speed accounted for.

Machine drift: every process times two calibration workloads, a matmul (`calib_process_ms`) and a copy from
DRAM (`calib_bw_process_ms`). When the two sets' readings of one differ (Mann-Whitney U over all their
processes at level alpha), the machine itself ran at another speed. A case's time mixes compute and memory
traffic, so the machine's effect on it lies between the two factors: NEW's latencies (and throughputs) are
divided by the factor between them nearest to the case's own change: a regression must remain after the
larger, an improvement after the smaller (`--normalize calibrations`, and `auto` for rows without a sentinel). The
factors are printed. The same holds per case: where the calibrations read in a case's own processes moved
(a busy spell met that case's processes more than the rest), their factors widen the case's range. Each of
the two is tested at alpha, so about 1 case in 10 gets a range by chance; a range only ever excuses a change
(the verdict needs it to remain after the range's far end), and in `natbench ab` a new version that slowed the
calibration itself would excuse its own slowdown up to that factor.
"""

from natbench.compare.cli import add_arguments, main
from natbench.compare.model import (
    ALPHA,
    METRICS,
    NORMALIZE,
    SENTINEL_TEST,
    THRESHOLD,
    CaseDelta,
    Comparison,
    Metric,
)
from natbench.compare.run import compare
from natbench.compare.scatter import between_runs, case_offsets, case_tau
from natbench.compare.text import format_text, show

__all__ = [
    "ALPHA",
    "METRICS",
    "NORMALIZE",
    "SENTINEL_TEST",
    "THRESHOLD",
    "CaseDelta",
    "Comparison",
    "Metric",
    "add_arguments",
    "between_runs",
    "case_offsets",
    "case_tau",
    "compare",
    "format_text",
    "main",
    "show",
]
