"""Sweep engine: presets, grid overrides, shards, failure isolation, resume after kill -9, the smoke preset."""

from __future__ import annotations

import json
import os
import re
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
    # one process per case: repeats and pairs have their own tests (tests/test_repeat.py)
    settings = {"min_run_time": 0.01, "warmup": 0.0, "min_samples": 2, "repeats": 1, **settings}
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
    assert sum(s.kind == "pair" for s in wsa) == 6 * 9  # each NA case against its window case
    # whole layers at k = 7 for the layer-level claims: two NA backends and the Swin pair, 9 maps each
    assert len([s for s in wsa if s.kind == "custom" and s.kernel_size == 7]) == 3 * 9
    quick = expand(load_preset("cpu-quick"))
    for target, backend in (("na", "fused"), ("window", "sdpa"), ("full", "sdpa")):
        at_k7 = {
            s.resolution
            for s in quick
            if s.target == target and s.backend == backend and s.kernel_size in (7, None)
        }
        assert len(at_k7) >= 5, (target, at_k7)  # enough points for a log-log fit
    assert {s.kernel_size for s in quick if s.target == "na" and s.resolution == 56} == {
        5,
        7,
        9,
        11,
        13,
        None,
    }
    na_group, nat_group = [s for s in quick if s.kind == "group"]
    # the kernel-exponent fit's sizes, interleaved; NAT-T's kernel sizes for the k5 / k7 and k9 / k7 ratios
    assert na_group.axis == "kernel_size" and na_group.values == [5, 7, 9, 11, 13]
    assert na_group.backend == "fused"
    assert nat_group.target == "nat_tiny" and nat_group.values == [5, 7, 9]
    grid_ids = {s.case_id for s in quick if s.kind == "model"}
    assert {m.case_id for m in nat_group.members} <= grid_ids  # the claims' rows are its members
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
        ('[settings]\nrepeat = 3\n[[grid]]\ntarget = "na"\n', r"unknown setting\(s\) \['repeat'\]"),
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
    assert not results.has_rows(tmp_path)


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
    pairs = [s for s in specs if s.kind == "pair"]  # members' own kernel sizes are overridden too
    assert pairs and all(p.numerator.case_id != p.denominator.case_id for p in pairs)
    assert {p.denominator.kernel_size for p in pairs} <= {3, None}


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
    (env,) = results.read_envs(tmp_path).values()
    assert env["python"]


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
    (killed,) = results.row_files(out)
    with open(killed, "a") as fh:  # a torn last line, as a kill during a write leaves
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
    for row in frame[(frame["status"] == "ok") & (frame["kind"] != "pair")].itertuples():
        assert row.latency_samples_ms and row.latency_ms >= row.latency_min_ms > 0 and row.macs > 0
        assert row.repeats == 5 and len(row.latency_process_ms) == 5
        assert row.latency_ci_low_ms <= row.latency_ms <= row.latency_ci_high_ms
    (pair,) = frame[frame["kind"] == "pair"].itertuples()
    assert pair.status == "ok" and pair.ratio_ci_low <= pair.ratio <= pair.ratio_ci_high
    assert set(pair.pair_of) <= set(frame["case_id"])
    (env,) = results.read_envs(out).values()
    assert env["packages"]["torch"]
    assert set(frame["machine"]) == {f"cpu:{env['cpu']['model']}:{frame['threads'].iloc[0]}t"}
    assert frame["fingerprint"].nunique() == 1 and frame["host"].notna().all()
    assert len(__import__("pandas").read_csv(out / "results.csv")) == len(specs)
    assert "100%" in done.stderr or "6/6" in done.stderr  # the progress bar ran


def test_run_prints_the_heap_reserved_and_the_timed_faults():
    from natbench.measure.cli import format_row

    text = format_row(
        {
            "case_id": "c",
            "latency_ms": 2.0,
            "timed_faults_process": [0.5, 12544.0],
            "heap_reserve_bytes": 64 << 20,
        }
    )
    assert re.search(r"heap_reserve_bytes +64.0 MiB", text)
    assert re.search(r"timed_faults_process +\[0.5, 1.254e\+04\]", text)


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
    assert cli(["run", "na", "--repeats", "0"]) == 2 and "--repeats must be >= 1" in capsys.readouterr().err
    assert cli(["run", "na", "--span", "-1"]) == 2 and "--span must be >= 0" in capsys.readouterr().err
    assert cli(["run", "na", "--span", "inf"]) == 2 and "finite" in capsys.readouterr().err


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
    assert frame.attrs["malformed"] == [f"{tmp_path / 'results.jsonl'}:1"]
    assert "malformed lines skipped: 1" in results.summary(frame)
    import pandas as pd

    back = pd.read_parquet(results.to_parquet(frame, tmp_path / "r.parquet"))
    assert list(back["case_id"]) == ["a", "c"] and json.loads(back["latency_samples_ms"][0]) == [1.0, 2.0]
    assert list(pd.read_csv(results.to_csv(frame, tmp_path / "r.csv"))["status"]) == ["ok", "error"]


def test_single_file_results_of_earlier_natbench_still_load(tmp_path):
    rows = [{"case_id": f"c{i}", "status": "ok", "latency_ms": 1.0 + i} for i in range(3)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "env.json").write_text(json.dumps({"python": "3.11"}))
    frame = results.load(tmp_path)
    assert list(frame["case_id"]) == ["c0", "c1", "c2"] and not frame.attrs["malformed"]
    assert "env.json" in results.read_envs(tmp_path)


def test_committed_results_load():
    frame = results.load(ROOT / "results" / "cpu-quick")
    assert len(frame) > 10 and (frame["status"] == "ok").all() and not frame.attrs["malformed"]


def tiny_preset(tmp_path: Path) -> Path:
    return write_preset(
        tmp_path / "tiny.toml",
        """
        [[grid]]
        target = ["full", "window"]
        resolution = 14
        kernel_size = 7
    """,
    )


def test_fingerprint_change_reruns_and_keeps_both_row_sets(tmp_path, capsys):
    preset, out = tiny_preset(tmp_path), tmp_path / "out"
    first = run_sweep(preset, out, progress=False, threads=2)
    assert len(first) == 2 and set(first["status"]) == {"ok"}
    again = run_sweep(preset, out, progress=False, threads=2)  # same environment: nothing measured
    assert len(results.read_rows(out)) == 2 and list(again["timestamp"]) == list(first["timestamp"])
    assert cli(["sweep", "--status", "--preset", str(preset), "--out", str(out), "--threads", "1"]) == 0
    assert "total 2: done 0, failed 0, stale 2, pending 0" in capsys.readouterr().out
    one = run_sweep(preset, out, progress=False, threads=1)  # another fingerprint: every case again
    rows = results.read_rows(out)
    assert len(rows) == 4 and set(one["threads"]) == {1}
    both = results.load(out)
    assert len(both) == 4 and both["fingerprint"].nunique() == 2
    assert set(both["machine"].str.rsplit(":", n=1).str[-1]) == {"1t", "2t"}
    run_sweep(preset, out, progress=False, threads=1, force=True)
    assert len(results.read_rows(out)) == 6 and len(results.load(out)) == 4  # the newest per identity
    assert cli(["sweep", "--status", "--preset", str(preset), "--out", str(out), "--threads", "1"]) == 0
    assert "total 2: done 2, failed 0, stale 0, pending 0" in capsys.readouterr().out


def test_four_concurrent_shards_one_killed_then_resumed(tmp_path):
    preset = write_preset(
        tmp_path / "grid.toml",
        """
        [[grid]]
        target = ["full", "window", "na"]
        backend = "reference"
        resolution = [14, 21, 28, 35]
    """,
        min_run_time=0.2,
    )
    out = tmp_path / "out"
    _, specs = plan(preset)
    assert len(specs) == 12

    def shard(i: int) -> subprocess.Popen:
        args = ["sweep", "--preset", str(preset), "--out", str(out), "--no-progress", "--shard", f"{i}/4"]
        return subprocess.Popen(
            [sys.executable, "-m", "natbench", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    procs = [shard(i) for i in range(4)]
    victim = procs[3]
    deadline = time.monotonic() + 180
    try:
        while not list((out / results.ROWS_DIR).glob("*-s3of4.jsonl")):
            assert victim.poll() is None, "shard 3 ended before it could be killed"
            assert time.monotonic() < deadline, "shard 3 wrote no row in 180 s"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        for proc in procs[:3]:
            assert proc.wait(timeout=240) == 0, proc.stderr.read()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    (killed,) = (out / results.ROWS_DIR).glob("*-s3of4.jsonl")
    with open(killed, "a") as fh:  # what a kill in the middle of a write leaves
        fh.write('{"case_id": "torn')
    with pytest.warns(UserWarning, match="malformed"):
        partial = results.read_rows(out)
    assert len(partial) < 12, "shard 3 finished before the kill"
    resumed = natbench("sweep", "--preset", str(preset), "--out", str(out), "--no-progress", "--shard", "3/4")
    assert resumed.returncode == 0, resumed.stderr
    malformed: list[str] = []
    with pytest.warns(UserWarning, match="malformed"):
        rows = results.read_rows(out, malformed)
    assert len(malformed) == 1 and malformed[0].startswith(f"{killed}:")  # counted, not silently dropped
    ids = [r["case_id"] for r in rows]
    assert sorted(ids) == sorted(s.case_id for s in specs)  # union == grid, 0 duplicates, 0 lost
    assert len({r["fingerprint"] for r in rows}) == 1
    assert len(list((out / results.ROWS_DIR).glob("*.jsonl"))) == 5 == len(results.read_envs(out))
    status = natbench("sweep", "--status", "--preset", str(preset), "--out", str(out))
    assert "total 12: done 12, failed 0, stale 0, pending 0" in status.stdout
    assert "malformed lines skipped: 1" in status.stdout


def test_local_executor_runs_the_smoke_preset_through_submitit(tmp_path):
    out = tmp_path / "smoke"
    # one worker per GPU index (the smoke cases are CPU cases: the indices need no GPU here)
    done = natbench("sweep", "--preset", "smoke", "--out", str(out), "--executor", "local", "--gpus", "0,1")
    assert done.returncode == 0, done.stderr
    assert "2 local workers finished" in done.stdout
    assert sorted(e["cuda_visible_devices"] for e in results.read_envs(out).values()) == ["0", "1"]
    frame = results.load(out)
    _, specs = plan("smoke")
    assert sorted(frame["case_id"]) == sorted(s.case_id for s in specs)
    assert (frame["status"] == "ok").all(), frame[["case_id", "error"]]
    assert sorted(p.name.split("-")[-1] for p in results.row_files(out)) == ["s0of2.jsonl", "s1of2.jsonl"]
    assert list((out / "submitit").iterdir())  # submitit's job folders


def test_slurm_dry_run_prints_the_job_array(tmp_path, capsys):
    args = ["sweep", "--preset", "na-vs-wsa", "--out", str(tmp_path / "o"), "--executor", "slurm"]
    args += ["--partition", "gpu", "--gpus-per-task", "1", "--time-limit", "90", "--tasks", "8", "--dry-run"]
    assert cli(args) == 0
    script = capsys.readouterr().out
    for line in ("#SBATCH --array=0-7%8", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1"):
        assert line in script
    assert "#SBATCH --time=90" in script and "#SBATCH --signal=USR2@" in script
    assert "submitit.core._submit" in script and not (tmp_path / "o").exists()
    assert (
        cli(["sweep", "--preset", "smoke", "--out", str(tmp_path), "--executor", "local", "--gpus", "a"]) == 2
    )
    assert "--gpus takes GPU indices" in capsys.readouterr().err


def test_a_preempted_slurm_task_requeues_as_a_resuming_shard():
    import pickle

    from natbench.sweep.executor import RequeueingShardTask, ShardTask, _tasks

    tasks = _tasks("smoke", "/shared/out", 3, {"force": True, "threads": 1}, requeue=True)
    assert [t.shard for t in tasks] == [(0, 3), (1, 3), (2, 3)]
    again = pickle.loads(pickle.dumps(tasks[1]))  # submitit pickles each task
    assert isinstance(again, RequeueingShardTask) and again.shard == (1, 3)
    requeued = again.checkpoint().function
    assert requeued.shard == (1, 3) and requeued.options == {"threads": 1}  # resumes: no second --force
    assert type(_tasks("smoke", "o", 1, {}, requeue=False)[0]) is ShardTask


def test_processes_run_round_robin_and_a_resumed_sweep_reuses_journaled_ones(tmp_path, monkeypatch):
    log = tmp_path / "order.txt"
    (tmp_path / "rr_cases.py").write_text(
        textwrap.dedent(f"""
        import torch

        def tagged(spec, device, dtype):
            with open({str(log)!r}, "a") as fh:
                fh.write(str(spec.resolution) + "\\n")
            a = torch.randn(8, 8)
            return lambda: a @ a
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = write_preset(
        tmp_path / "rr.toml",
        """
        [[grid]]
        target = "rr_cases:tagged"
        resolution = [1, 2, 3]
    """,
        repeats=3,
        reruns=0,
    )
    out = tmp_path / "out"
    frame = run_sweep(preset, out, progress=False)
    # pass 1 forward, pass 2 backward, pass 3 forward: each case's processes span the sweep
    assert log.read_text().split() == ["1", "2", "3", "3", "2", "1", "1", "2", "3"]
    assert sorted(frame["repeats"]) == [3, 3, 3] and all(len(c) == 3 for c in frame["calib_process_ms"])
    assert not list((out / results.PROCESSES_DIR).glob("*.jsonl"))  # journal gone once every row is written
    # An interrupted sweep: two processes of case 1 were journaled by a writer that died.
    first = frame[frame["resolution"] == 1].iloc[0]
    one = {"status": "ok", "latency_ms": 1.0, "latency_samples_ms": [1.0], "peak_mem_bytes": 10}
    for _ in range(2):
        results.append_process(out / "b", first["case_id"], first["fingerprint"], one, "dead-writer")
    log.write_text("")
    run_sweep(preset, out / "b", progress=False)
    assert sorted(log.read_text().split()) == ["1", "2", "2", "2", "3", "3", "3"]  # case 1: one more
    got = [r for r in results.read_rows(out / "b") if r["resolution"] == 1][0]
    assert got["repeats"] == 3 and got["latency_process_ms"][:2] == [1.0, 1.0]


def test_a_sweep_reruns_processes_the_machine_slowed_within_its_budget(tmp_path, monkeypatch):
    from natbench.measure import repeat

    calls = []
    slow = {("b", 1), ("b", 3), ("c", 0), ("c", 1), ("c", 2), ("c", 3), ("c", 4)}  # (case, nth process)

    def fake_process(spec, *args, **kwargs):
        name = spec["target"].split(":")[1]
        nth = sum(c == name for c in calls)
        calls.append(name)
        calib = 0.50 if (name, nth) in slow else 0.33
        from natbench.measure.case import spec_row
        from natbench.measure.spec import CaseSpec

        row = spec_row(CaseSpec.from_dict(spec))
        return {
            **row,
            "status": "ok",
            "latency_ms": 10 * calib,
            "latency_samples_ms": [1.0],
            "calib_ms": calib,
        }

    monkeypatch.setattr(repeat, "run_process", fake_process)
    (tmp_path / "rr2.py").write_text("def a(s, d, t):\n    return lambda: None\nb = c = a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = write_preset(
        tmp_path / "rerun.toml", '[[grid]]\ntarget = ["rr2:a", "rr2:b", "rr2:c"]', repeats=3, reruns=0.67
    )
    frame = run_sweep(preset, tmp_path / "out", progress=False).set_index("target")
    # a: never slowed, no re-run; b: 2 slowed of 3, two re-runs; c: always slowed, re-runs until its share
    # (0.67 of 3 repeats: 2 re-runs) is spent
    assert calls.count("a") == 3 and calls.count("b") == 5 and calls.count("c") == 5
    assert list(frame["processes_run"]) == [3, 5, 5]
    assert list(frame["contended_processes"]) == [0, 2, 5]
    assert frame.loc["rr2:b", "latency_process_ms"] == pytest.approx([3.3, 3.3, 3.3])  # the quiet ones
    assert frame.loc["rr2:c", "repeats"] == 3
    # A sweep stopped after b's three processes were journaled resumes with b's re-runs, not without them.
    calls.clear()
    first = frame.loc["rr2:b"]
    out = tmp_path / "resumed"
    for calib in (0.33, 0.50, 0.50):
        one = {"status": "ok", "latency_ms": 10 * calib, "latency_samples_ms": [1.0], "calib_ms": calib}
        results.append_process(out, first["case_id"], first["fingerprint"], one, "dead-writer")
    resumed = run_sweep(preset, out, progress=False).set_index("target")
    assert calls.count("b") == 2 and resumed.loc["rr2:b", "processes_run"] == 5
    with pytest.raises(ValueError, match="rerun_share"):
        run_sweep(preset, tmp_path / "bad", progress=False, rerun_share=-1)
    # re-run passes whose seconds are spent (none here) leave every case its R processes
    calls.clear()
    capped = run_sweep(preset, tmp_path / "capped", progress=False, rerun_seconds=0).set_index("target")
    assert sorted(calls) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3 and list(capped["processes_run"]) == [3, 3, 3]
    with pytest.raises(ValueError, match="rerun_seconds"):
        run_sweep(preset, tmp_path / "bad", progress=False, rerun_seconds=-1)


def test_preset_reruns_is_a_share_of_repeats(tmp_path):
    with pytest.raises(ValueError, match="share of repeats"):
        load_preset(write_preset(tmp_path / "r.toml", '[[grid]]\ntarget = "na"', reruns=2))
    assert load_preset(write_preset(tmp_path / "z.toml", '[[grid]]\ntarget = "na"', reruns=0)).reruns == 0
    timed = write_preset(tmp_path / "s.toml", '[[grid]]\ntarget = "na"', rerun_seconds=45)
    assert load_preset(timed).rerun_seconds == 45 and load_preset("cpu-quick").rerun_seconds == 25
    assert (
        load_preset(
            write_preset(tmp_path / "0.toml", '[[grid]]\ntarget = "na"', rerun_seconds=0)
        ).rerun_seconds
        == 0
    )
    with pytest.raises(ValueError, match="rerun_seconds must be a finite number >= 0"):
        load_preset(write_preset(tmp_path / "n.toml", '[[grid]]\ntarget = "na"', rerun_seconds=-5))
    with pytest.raises(ValueError, match="finite"):
        load_preset(write_preset(tmp_path / "t.toml", '[[grid]]\ntarget = "na"', timeout="inf"))


def test_pair_processes_stay_out_of_the_contention_reference(tmp_path, monkeypatch):
    from natbench.measure import repeat
    from natbench.measure.case import spec_row
    from natbench.measure.spec import CaseSpec

    pairs = []

    def fake_process(spec, *args, **kwargs):
        if spec.get("kind") == "pair":  # faster than any case's calibration, then slowed once
            pairs.append(1)
            return {
                "status": "ok",
                "a_ms": [1.0, 1.0],
                "b_ms": [1.0, 1.0],
                "ratios": [1.0, 1.0],
                "calib_ms": 0.50 if len(pairs) == 2 else 0.20,
                "threads": 1,
                "device_name": "cpu",
                "affinity": [0],
                "allocator": "glibc malloc",
            }
        row = spec_row(CaseSpec.from_dict(spec))
        return {**row, "status": "ok", "latency_ms": 3.3, "latency_samples_ms": [3.3], "calib_ms": 0.33}

    monkeypatch.setattr(repeat, "run_process", fake_process)
    (tmp_path / "rr3.py").write_text("def a(s, d, t):\n    return lambda: None\nb = a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    grids = '[[grid]]\ntarget = "rr3:a"\n[[pair]]\nnumerator = { target = "rr3:a" }\ndenominator = { target = "rr3:b" }\n'
    frame = run_sweep(write_preset(tmp_path / "p.toml", grids, repeats=3), tmp_path / "out", progress=False)
    cases = frame[frame["kind"] != "pair"]
    assert len(cases) == 2 and list(cases["processes_run"]) == [3, 3]
    assert list(cases["contended_processes"]) == [0, 0]
    pair = frame[frame["kind"] == "pair"].iloc[0]
    # judged against the cases' 0.33: its slowed process is re-run and left out
    assert len(pairs) == 4 and pair["processes_run"] == 4 and pair["contended_processes"] == 1
    assert pair["repeats"] == 3
