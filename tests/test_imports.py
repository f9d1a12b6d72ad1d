"""The pipeline's imports point one way: the results table and `natbench run` need nothing of the sweep."""

from __future__ import annotations

import subprocess
import sys


def test_results_and_run_command_do_not_import_the_sweep():
    code = (
        "import sys, natbench.results, natbench.measure.cli, natbench.measure.case;"
        "print(sorted(m for m in sys.modules if m.startswith('natbench.sweep')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
