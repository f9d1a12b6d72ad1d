"""natbench gpu-check on CPU: the plan (--dry-run), the install commands, the CPU stand-in end to end, and the
CUDA seams (event source, GPU memory stats, natten's kernel query) driven by stand-ins."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch

from natbench import gpu_check, results
from natbench.attention import natten_backend
from natbench.cli import main
from natbench.measure import timer
from natbench.measure.memory import PeakMemory


def test_dry_run_prints_plan_and_estimate_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["gpu-check", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "GPU: cuda, bfloat16" in text and "estimate" in text and "480 s budget" in text
    for model in gpu_check.TABLE3_MODELS:
        assert model in text
    assert "batch 64" in text and "k = 7" in text
    assert not out.exists()


def test_without_cuda_it_refuses_clearly(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", "--out", str(tmp_path / "r")]) == 2
    assert "--stand-in" in capsys.readouterr().err


def test_reduced_presets_keep_names_and_shrink_the_grid():
    table3, wsa = gpu_check.reduced_presets(gpu_check.GPU)
    assert (table3.name, wsa.name) == ("paper-table3", "na-vs-wsa")  # the claims select rows by preset
    assert table3.defaults["dtype"] == "bfloat16" and table3.defaults["batch"] == 64
    assert table3.grids == [{"target": list(gpu_check.TABLE3_MODELS)}]
    assert wsa.defaults["kernel_size"] == 7 and wsa.defaults["device"] == "cuda"
    chunks = gpu_check.sweep_chunks(gpu_check.GPU)
    assert len(chunks) == len(gpu_check.TABLE3_MODELS) + len(gpu_check.WSA_SIDES)


def test_install_hides_the_gpu_for_natten_and_uses_carried_wheels(tmp_path):
    calls = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    def runner(argv, env, **kw):
        calls.append((argv, env))
        return Done()

    found = {"natten": None, "timm": object(), "pandas": object(), "scipy": None, "psutil": object()}
    missing = gpu_check.missing_packages(lambda name: found[name])
    assert missing == ["natten", "scipy"]
    result = gpu_check.install(missing, tmp_path, runner)
    assert result["installed"] == [f"natten=={gpu_check.NATTEN_VERSION}", "scipy"]
    argv, env = calls[0]
    assert env["CUDA_VISIBLE_DEVICES"] == "" and "--no-build-isolation" in argv
    assert argv[argv.index("--find-links") + 1] == str(tmp_path) and "--no-index" in argv
    assert calls[1][1].get("CUDA_VISIBLE_DEVICES") != ""


def test_install_failure_says_which_command(tmp_path):
    def runner(argv, env, **kw):
        return subprocess.CompletedProcess(argv, 1, "", "no matching distribution")

    with pytest.raises(RuntimeError, match="natten==") as err:
        gpu_check.install(["natten"], tmp_path, runner)
    assert "no matching distribution" in str(err.value)


def test_sweeps_stop_at_the_budget_and_say_what_did_not_run(tmp_path):
    import pandas as pd

    ran = []

    def sweep(preset, out, grid, progress):
        ran.append((preset.name, grid))
        return pd.DataFrame({"status": ["ok"]})

    info = gpu_check.run_sweeps(gpu_check.STAND_IN, tmp_path, time.monotonic() + 1e6, sweep)
    assert len(ran) == len(gpu_check.sweep_chunks(gpu_check.STAND_IN)) and not info["not_run_budget"]
    info = gpu_check.run_sweeps(gpu_check.STAND_IN, tmp_path, time.monotonic(), sweep)
    assert info["ran"] == [] and len(info["not_run_budget"]) == len(ran)


@pytest.mark.slow
def test_cpu_stand_in_runs_every_step(tmp_path, capsys):
    out = tmp_path / "gpu-check"
    assert main(["gpu-check", "--stand-in", "--out", str(out)]) == 0
    summary = json.loads((out / "gpu-check.json").read_text())
    assert [s["status"] for s in summary["steps"]] == ["ok"] * 4
    checks = summary["steps"][1]["detail"]["checks"]
    assert checks and all(c["ok"] for c in checks)
    assert any("flex+rpb forward" in c["check"] for c in checks)
    assert any("natten forward" in c["check"] for c in checks)
    rows = results.load(out)
    assert set(rows["preset"]) == {"paper-table3", "na-vs-wsa"}
    assert (rows["status"] == "ok").all()
    assert json.loads((out / "claims.json").read_text())


# -- CUDA seams with CPU stand-ins ---------------------------------------------------------------------------
class FakeEvent:
    clock = [0.0]

    def record(self):
        FakeEvent.clock[0] += 1.5
        self.t = FakeEvent.clock[0]

    def elapsed_time(self, end):
        return end.t - self.t


def test_cuda_timer_logic_with_a_stand_in_event_source(monkeypatch):
    monkeypatch.setattr(timer, "L2_FLUSH_BYTES", 1024)
    calls, synced = [], []
    cfg = timer.TimerConfig(min_run_time=0.01, l2_flush=True, min_reps=4, max_reps=6)
    t = timer._time_cuda(lambda: calls.append(1), torch.device("cpu"), cfg, 1.0, FakeEvent, synced.append)
    assert t.samples_ms == [1.5] * 4 and len(calls) == 4 and synced == [torch.device("cpu")]
    assert t.method == "cuda-events+l2-flush"
    t = timer._time_cuda(lambda: None, torch.device("cpu"), cfg, 1e-9, FakeEvent, synced.append)
    assert len(t.samples_ms) == 6  # capped at max_reps


class FakeCudaStats:
    def __init__(self):
        self.allocated, self.peak, self.log = 100, 100, []

    def synchronize(self, device):
        self.log.append("sync")

    def reset_peak_memory_stats(self, device):
        self.peak = self.allocated

    def memory_allocated(self, device):
        return self.allocated

    def max_memory_allocated(self, device):
        return self.peak


def test_gpu_peak_memory_logic_with_a_stand_in_stats_source():
    stats = FakeCudaStats()
    mem = PeakMemory("cpu", stats=stats)
    mem.baseline()
    stats.allocated = stats.peak = 300  # inputs built
    mem.built()
    mem.reset_peak()
    stats.peak = 1000  # the call's peak
    assert mem.peak_increase() == 900 and "max_memory_allocated" in mem.method
    assert "sync" in stats.log


def test_natten_kernel_detection_with_stand_ins(monkeypatch):
    q = torch.randn(1, 8, 8, 2, 16)
    assert natten_backend.natten_kernel(q, chooser=lambda t, compile: "hopper-fna") == "hopper-fna"
    assert natten_backend.natten_kernel(q) == "flex-fna"  # this CPU build: natten's Flex path
    assert "flex-fna" in natten_backend.compatible_kernels(q)
    monkeypatch.setattr(natten_backend, "has_libnatten", lambda: False)
    assert "libnatten" in natten_backend.why_unavailable(torch.device("cuda"), torch.float16)
    monkeypatch.setattr(natten_backend, "has_libnatten", lambda: True)
    assert natten_backend.why_unavailable(torch.device("cuda"), torch.float16) is None


def test_sweeps_estimate_the_next_chunk_from_the_chunks_that_ran(tmp_path, monkeypatch):
    import pandas as pd

    clock = [0.0]
    monkeypatch.setattr(gpu_check.time, "monotonic", lambda: clock[0])

    def sweep(preset, out, grid, progress):
        clock[0] += 10.0  # every chunk takes 10 s
        return pd.DataFrame({"status": ["ok"]})

    mode = gpu_check.dataclasses.replace(gpu_check.STAND_IN, models=("a", "b", "c"), sides=())
    monkeypatch.setattr(
        gpu_check,
        "sweep_chunks",
        lambda m: [(type("P", (), {"name": "paper-table3"}), {"target": [x]}) for x in m.models],
    )
    info = gpu_check.run_sweeps(mode, tmp_path, 25.0, sweep)
    assert info["ran"] == ["paper-table3:target=a", "paper-table3:target=b"]
    assert info["not_run_budget"] == ["paper-table3:target=c"]
