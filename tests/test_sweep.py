"""Sweep engine: presets, grid overrides, shards, failure isolation, resume after kill -9, the smoke preset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from natbench import results
from natbench.cli import main as cli
from natbench.sweep import run_sweep
from natbench.sweep.preset import available_presets, expand, load_preset, parse_grid_overrides
from natbench.sweep.runner import plan

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = {"smoke", "cpu-quick", "paper-table3", "na-vs-wsa", "kernel-scaling", "resolution-scaling"}


def write_preset(path: Path, grids: str, **settings) -> Path:
    settings = {"min_run_time": 0.01, "warmup": 0.0, "min_samples": 2, **settings}
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    path.write_text(
        textwrap.dedent("""
        description = "test preset"
        [settings]
        """)
        + lines
        + textwrap.dedent("""
        [defaults]
        device = "cpu"
        heads = 2
        head_dim = 8
    """)
        + textwrap.dedent(grids)
    )
    return path


def natbench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "natbench", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        **kwargs,
    )


def test_bundled_presets_parse_and_expand():
    assert BUNDLED <= set(available_presets())
    for name in BUNDLED:
        assert expand(load_preset(name)), name
    table3 = expand(load_preset("paper-table3"))
    assert {s.kind for s in table3} == {"model"}
    table3_rows = [
        s for s in table3 if s.backend == "auto" and s.kernel_size is None and s.mode == "inference"
    ]
    assert len({s.target for s in table3_rows}) >= 10
    assert {(s.resolution, s.dtype, s.device) for s in table3} == {(224, "float16", "cuda")}
    assert {s.batch for s in table3_rows} == {256}
    wsa = expand(load_preset("na-vs-wsa"))
    assert len([s for s in wsa if s.kind == "op"]) == 2 * 6 * 9
    # whole layers at k = 7 for the layer-level claims: two NA backends and the Swin pair, 9 maps each
    assert len([s for s in wsa if s.kind == "custom" and s.kernel_size == 7]) == 3 * 9
    quick = expand(load_preset("cpu-quick"))
    for target, backend in (("na", "tiled"), ("window", "sdpa"), ("full", "sdpa")):
        at_k7 = {
            s.resolution
            for s in quick
            if s.target == target and s.backend == backend and s.kernel_size in (7, None)
        }
        assert len(at_k7) >= 5, (target, at_k7)  # enough points for a log-log fit
    assert {s.kernel_size for s in quick if s.target == "na" and s.resolution == 56} == {3, 5, 7, 9, 11, 13}
    assert {"nat_mini", "swin_tiny", "dinat_mini", "nat_tiny"} <= {
        s.target for s in quick if s.kind == "model"
    }
    assert any(s.mode == "training" for s in quick) and any(s.drop_rpb for s in quick)


@pytest.mark.parametrize(
    "text, match",
    [
        ('[[grid]]\ntarget = "na"\ncolour = 3\n', r"grid 1: unknown field\(s\) \['colour'\]; valid fields"),
        ('[[grid]]\ntarget = "na"\ndtype = ["float64"]\n', "grid 1: dtype must be one of"),
        ('[[grid]]\ntarget = "na"\nresolution = []\n', "resolution is an empty list"),
        ('[sweep]\n[[grid]]\ntarget = "na"\n', r"unknown key\(s\) \['sweep'\]"),
        ('[settings]\nrepeats = 3\n[[grid]]\ntarget = "na"\n', r"unknown setting\(s\) \['repeats'\]"),
        ('description = "no grid"\n', "needs at least one"),
        ('[[grid]]\ntarget = "nat_nano"\n', "unknown target"),
    ],
)
def test_bad_presets_fail_with_a_clear_message(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        plan(path)


def test_cli_rejects_unknown_preset_and_grid_key(tmp_path, capsys):
    assert cli(["sweep", "--preset", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nope'" in err and "cpu-quick" in err and "smoke" in err
    assert cli(["sweep", "--preset", "smoke", "--out", str(tmp_path), "--grid", "colour=red"]) == 2
    err = capsys.readouterr().err
    assert "unknown grid key 'colour'" in err and "resolution" in err and "kernel_size" in err
    assert cli(["sweep", "--preset", "smoke", "--out", str(tmp_path), "--shard", "3/3"]) == 2
    assert "0 <= I < N" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_grid_overrides_replace_a_dimension():
    assert parse_grid_overrides(["resolution=14, 28", "dtype=fp16", "shifted=true"]) == {
        "resolution": [14, 28],
        "dtype": ["float16"],
        "shifted": [True],
    }
    with pytest.raises(ValueError, match="resolution must be an integer"):
        parse_grid_overrides(["resolution=big"])
    _, specs = plan("cpu-quick", ["resolution=14,28", "kernel_size=3"])
    ops = [s for s in specs if s.kind == "op"]
    assert {s.resolution for s in ops} == {14, 28} and {s.kernel_size for s in ops} <= {3, None}
    models = [s for s in specs if s.kind == "model"]
    assert {s.resolution for s in models} == {14, 28} and {s.kernel_size for s in models} <= {3, None}


def test_shards_partition_the_grid():
    _, full = plan("cpu-quick")
    shards = [plan("cpu-quick", shard=f"{i}/3")[1] for i in range(3)]
    ids = [[s.case_id for s in shard] for shard in shards]
    assert sorted(i for shard in ids for i in shard) == sorted(s.case_id for s in full)
    assert len({i for shard in ids for i in shard}) == len(full) == sum(map(len, ids))
    assert ids == [[s.case_id for s in plan("cpu-quick", shard=(i, 3))[1]] for i in range(3)]  # deterministic


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a CPU-only machine reports")
def test_cuda_presets_report_needs_cuda_on_cpu(tmp_path):
    frame = run_sweep("paper-table3", tmp_path, progress=False)
    assert len(frame) == len(expand(load_preset("paper-table3"))) and set(frame["status"]) == {"unsupported"}
    assert all(e.startswith("needs CUDA") for e in frame["error"])
    assert json.loads((tmp_path / "env.json").read_text())["python"]


def test_crash_oom_and_hang_leave_the_other_rows_intact(tmp_path, monkeypatch):
    (tmp_path / "faulty_cases.py").write_text(
        textwrap.dedent("""
        import ctypes, time

        def segfaults(spec, device, dtype):
            ctypes.string_at(0)

        def hangs(spec, device, dtype):
            time.sleep(60)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = write_preset(
        tmp_path / "faulty.toml",
        """
        [[grid]]
        target = ["full", "faulty_cases:segfaults", "faulty_cases:hangs", "window"]
        resolution = 14
        # ~2.5 GB of gathered keys against the 0.25 GiB allowance below: a real allocation failure
        [[grid]]
        target = "na"
        backend = "reference"
        batch = 8
        resolution = 112
        heads = 4
        head_dim = 32
    """,
        memory_limit_gb=0.25,
        timeout=20,
    )
    frame = run_sweep(preset, tmp_path / "out", progress=False, timeout=4)
    status = dict(zip(frame["target"], frame["status"]))
    assert status == {
        "full": "ok",
        "window": "ok",
        "faulty_cases:segfaults": "error",
        "faulty_cases:hangs": "timeout",
        "na": "oom",
    }
    errors = dict(zip(frame["target"], frame["error"]))
    assert "SIGSEGV" in errors["faulty_cases:segfaults"] and "allocate" in errors["na"]
    rows = results.read_rows(tmp_path / "out")
    assert len(rows) == 5 and all(r["preset"] == "faulty" and r["env"]["python"] for r in rows)
    # Re-running runs nothing; --retry re-runs only the cases with those statuses.
    again = run_sweep(preset, tmp_path / "out", progress=False, timeout=4, retry=("error",))
    assert len(again) == 5 and len(results.read_rows(tmp_path / "out")) == 6


def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path):
    preset = write_preset(
        tmp_path / "resume.toml",
        """
        [[grid]]
        target = ["full", "window", "na"]
        backend = "reference"
        resolution = [14, 28]
    """,
        min_run_time=0.3,
    )
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "natbench",
        "sweep",
        "--preset",
        str(preset),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while len(results.read_rows(out)) < 1:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no row after 120 s"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    finished = [r["case_id"] for r in results.read_rows(out)]
    assert 1 <= len(finished) < 6, "kill the sweep mid-way"
    with open(out / "results.jsonl", "a") as fh:  # a torn last line, as a kill during a write leaves
        fh.write('{"case_id": "half-writ')
    done = natbench(
        "sweep", "--preset", str(preset), "--out", str(out), "--no-progress", "--export", "parquet"
    )
    assert done.returncode == 0, done.stderr
    with pytest.warns(UserWarning, match="malformed"):
        rows = results.read_rows(out)
    ids = [r["case_id"] for r in rows]
    _, specs = plan(preset)
    assert len(ids) == len(set(ids)) == len(specs) == 6
    assert set(ids) == {s.case_id for s in specs} and ids[: len(finished)] == finished
    assert len(__import__("pandas").read_parquet(out / "results.parquet")) == 6


def test_smoke_preset_end_to_end_cli(tmp_path):
    out = tmp_path / "smoke"
    done = natbench("sweep", "--preset", "smoke", "--out", str(out), "--export", "csv")
    assert done.returncode == 0, done.stderr
    assert "status: ok" in done.stdout
    frame = results.load(out)
    _, specs = plan("smoke")
    assert sorted(frame["case_id"]) == sorted(s.case_id for s in specs)
    ops = frame[frame["kind"] == "op"]
    assert (ops["status"] == "ok").all(), ops[["case_id", "error"]]
    for row in frame[frame["status"] == "ok"].itertuples():
        assert row.latency_samples_ms and row.latency_ms >= row.latency_min_ms > 0 and row.macs > 0
    assert json.loads((out / "env.json").read_text())["packages"]["torch"]
    assert len(__import__("pandas").read_csv(out / "results.csv")) == len(specs)
    assert "100%" in done.stderr or "6/6" in done.stderr  # the progress bar ran


def test_run_command_prints_one_json_row(capsys):
    assert (
        cli(
            [
                "run",
                "full",
                "--resolution",
                "14",
                "--heads",
                "2",
                "--head-dim",
                "8",
                "--device",
                "cpu",
                "--min-run-time",
                "0.01",
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "ok" and row["target"] == "full" and row["macs"] == 2 * 196**2 * 8 * 2
    assert row["env"]["python"] and row["latency_samples_ms"]
    assert cli(["run", "na", "--kernel-size", "4"]) == 2
    assert "must be odd" in capsys.readouterr().err


def test_append_row_recovers_from_a_torn_line_and_exports(tmp_path):
    results.append_row(
        tmp_path, {"case_id": "a", "status": "ok", "latency_samples_ms": [1.0, 2.0], "env": {"python": "3"}}
    )
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"case_id": "b", "sta')
    results.append_row(tmp_path, {"case_id": "c", "status": "error", "error": "boom"})
    with pytest.warns(UserWarning, match="malformed"):
        frame = results.load(tmp_path)
    assert list(frame["case_id"]) == ["a", "c"]
    import pandas as pd

    back = pd.read_parquet(results.to_parquet(frame, tmp_path / "r.parquet"))
    assert list(back["case_id"]) == ["a", "c"] and json.loads(back["latency_samples_ms"][0]) == [1.0, 2.0]
    assert list(pd.read_csv(results.to_csv(frame, tmp_path / "r.csv"))["status"]) == ["ok", "error"]
