"""Groups (natbench.measure.group): cases along one axis timed interleaved in the same processes, the preset
tables that declare them, the paired fit, and the scaling claims that read them."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from natbench import results
from natbench.claims import PASS, judge, load_claims
from natbench.measure import interleave
from natbench.measure.group import GroupSpec
from natbench.measure.interleave import measure_interleaved
from natbench.measure.repeat import finish, run_repeated
from natbench.measure.spec import CaseSpec
from natbench.measure.stats import fit_power_law, fit_power_law_paired
from natbench.sweep.preset import expand, load_preset

FAST = {"min_run_time": 0.01, "warmup": 0.0, "min_samples": 2}


@pytest.fixture
def sized(tmp_path, monkeypatch):
    (tmp_path / "group_cases.py").write_text(
        textwrap.dedent("""
        import torch

        def matmul(spec, device, dtype):
            if spec.resolution == 99:
                raise RuntimeError("broken member")
            a = torch.randn(spec.resolution, spec.resolution)
            def call():
                return a @ a
            call.__name__ = f"call_{spec.resolution}"
            return call
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def members(*sizes: int) -> tuple[CaseSpec, ...]:
    return tuple(
        CaseSpec.from_dict({"target": "group_cases:matmul", "resolution": r, "device": "cpu"}) for r in sizes
    )


def test_group_rounds_reverse_their_order_and_time_every_member(sized, monkeypatch):
    order = []
    block = interleave._block

    def recording(fn, n, device, untimed):
        order.append(fn.__name__)
        return block(fn, n, device, untimed)

    monkeypatch.setattr(interleave, "_block", recording)
    got = measure_interleaved([m.to_dict() for m in members(8, 16, 32)], FAST)
    assert got["status"] == "ok" and len(got["member_ms"]) == 3
    rounds = len(got["member_ms"][0])
    assert rounds >= interleave.MIN_ROUNDS and rounds % 2 == 0
    assert all(len(t) == rounds for t in got["member_ms"]) and got["sentinel_ms"] > 0
    forward = ["call_8", "call_16", "call_32"]
    assert [order[i : i + 3] for i in range(0, len(order), 3)] == [forward, forward[::-1]] * (rounds // 2)


def test_group_row_keeps_each_members_processes_aligned(sized):
    group = GroupSpec(members(8, 16, 32), "resolution")
    row = run_repeated(group.to_dict(), 60, FAST, repeats=2)
    assert row["status"] == "ok" and row["kind"] == "group" and row["repeats"] == 2
    assert row["group_of"] == [m.case_id for m in group.members] and row["group_values"] == [8, 16, 32]
    assert row["group_axis"] == "resolution" and row["resolution"] is None
    assert [len(v) for v in row["member_process_ms"]] == [2, 2, 2]
    assert row["member_ms"] == [float(np.median(v)) for v in row["member_process_ms"]]
    results.append_row(sized / "out", row)
    assert "ms by resolution: 8: " in results.summary(results.load(sized / "out"))
    broken = run_repeated(GroupSpec(members(8, 99), "resolution").to_dict(), 60, FAST, repeats=2)
    assert broken["status"] == "error" and "broken member" in broken["error"]


def test_a_group_leaves_out_its_contended_processes():
    group = GroupSpec(members(8, 16), "resolution")

    def proc(scale, calib):
        return {
            "status": "ok",
            "member_ms": [[1.0 * scale] * 4, [4.0 * scale] * 4],
            "calib_ms": calib,
            "sentinel_ms": calib,
            "threads": 1,
            "device_name": "cpu",
            "affinity": [0],
            "allocator": "glibc",
        }

    processes = [proc(1.0, 1.0), proc(1.6, 1.5), proc(1.02, 1.0), proc(0.98, 1.0)]
    row = finish(group.to_dict(), processes, repeats=3, reference={"calib_ms": 1.0, "sentinel_ms": 1.0})
    assert row["processes_run"] == 4 and row["contended_processes"] == 1
    assert row["member_process_ms"] == [[1.0, 1.02, 0.98], [4.0, 4.08, 3.92]]
    # a process whose members all ran 30 % slow is contended though its calibrations read quiet
    processes = [proc(1.0, 1.0), proc(1.3, 1.0), proc(1.02, 1.0), proc(0.98, 1.0)]
    row = finish(group.to_dict(), processes, repeats=3, reference={"calib_ms": 1.0, "sentinel_ms": 1.0})
    assert row["contended_processes"] == 1 and row["member_process_ms"][0] == [1.0, 1.02, 0.98]


def test_group_spec_checks_its_members():
    with pytest.raises(ValueError, match="only in its axis"):
        GroupSpec(members(8, 16), "kernel_size")
    with pytest.raises(ValueError, match="at least two"):
        GroupSpec(members(8), "resolution")
    with pytest.raises(ValueError, match="axis must be a case field"):
        GroupSpec(members(8, 16), "colour")
    group = GroupSpec(members(8, 16), "resolution")
    assert GroupSpec.from_dict(group.to_dict()) == group and group.case_id.startswith("group-")


def test_preset_declares_groups(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        textwrap.dedent("""
        [defaults]
        device = "cpu"
        heads = 2
        head_dim = 8
        [[grid]]
        target = "na"
        backend = "fused"
        resolution = 14
        kernel_size = 3
        [[group]]
        axis = "kernel_size"
        target = "na"
        backend = "fused"
        resolution = [14, 21]
        kernel_size = [3, 5, 7]
    """)
    )
    specs = expand(load_preset(path))
    groups = [s for s in specs if isinstance(s, GroupSpec)]
    assert [g.members[0].resolution for g in groups] == [14, 21]
    assert all(g.values == [3, 5, 7] for g in groups)
    ids = [s.case_id for s in specs]
    # the grid's case, the groups' five other members, two groups
    assert {m.case_id for g in groups for m in g.members} <= set(ids) and len(ids) == len(set(ids)) == 8
    one = expand(load_preset(path), {"kernel_size": [3]})  # an override leaves one member: no group
    assert not any(isinstance(s, GroupSpec) for s in one)


@pytest.mark.parametrize(
    "group, match",
    [
        ('target = "na"\nkernel_size = [3, 5]\n', "needs axis"),
        ('axis = "kernel_size"\ntarget = "na"\nkernel_size = 3\n', "list of at least two"),
        ('axis = "kernel_size"\ntarget = "na"\ncolour = 1\nkernel_size = [3, 5]\n', "unknown field"),
    ],
)
def test_bad_group_declarations_fail_clearly(tmp_path, group, match):
    path = tmp_path / "bad.toml"
    path.write_text('[[grid]]\ntarget = "full"\n[[group]]\n' + group)
    with pytest.raises(ValueError, match=match):
        load_preset(path)


def planted(slow: float) -> tuple[list[float], list[list[float]]]:
    """Five processes timing y = k^2 at five k, one of them `slow` times slower on every size."""
    rng = np.random.default_rng(0)
    ks = [5.0, 7.0, 9.0, 11.0, 13.0]
    rows = []
    for p in range(5):
        level = slow if p == 2 else 1.0 + 0.02 * p
        rows.append([level * k**2 * (1 + 0.003 * rng.standard_normal()) for k in ks])
    return ks, rows


def test_paired_fit_cancels_a_slow_process_that_an_unpaired_fit_cannot():
    ks, rows = planted(1.6)
    paired = fit_power_law_paired(ks, rows)
    unpaired = fit_power_law(ks, [list(col) for col in zip(*rows)])
    assert paired.ci_low <= 2.0 <= paired.ci_high and paired.ci_high - paired.ci_low < 0.02
    assert unpaired.ci_high - unpaired.ci_low > 5 * (paired.ci_high - paired.ci_low)
    assert "paired" in paired.method and paired.processes == 5 and paired.n_sizes == 5
    with pytest.raises(ValueError, match="one row of 5 values"):
        fit_power_law_paired(ks, [row[:4] for row in rows])
    with pytest.raises(ValueError, match=">= 5 distinct sizes"):
        fit_power_law_paired(ks[:4], [row[:4] for row in rows])


def _kernel_rows(ks, rows, with_group: bool):
    import pandas as pd

    cases = [f"na-fused-r56-k{int(k)}" for k in ks]
    common = {"status": "ok", "device": "cpu", "backend": "fused", "dtype": "float32", "mode": "inference"}
    common.update(batch=1, resolution=56, dilation=1, heads=2, head_dim=32, timestamp="t", preset="cpu-quick")
    # each size's own processes: the slow spell hit k = 5 and k = 7 only
    spread = [
        [v * (1.5 if j < 2 and p < 2 else 1.0) for p, v in enumerate(col)] for j, col in enumerate(zip(*rows))
    ]
    table = [
        {
            **common,
            "case_id": c,
            "kind": "op",
            "target": "na",
            "kernel_size": int(k),
            "latency_ms": float(np.median(v)),
            "latency_process_ms": v,
        }
        for c, k, v in zip(cases, ks, spread)
    ]
    if with_group:
        table.append(
            {
                **common,
                "case_id": "group-na-kernel-size-x",
                "kind": "group",
                "target": "na",
                "kernel_size": None,
                "group_of": cases,
                "group_axis": "kernel_size",
                "group_values": [int(k) for k in ks],
                "member_process_ms": [list(col) for col in zip(*rows)],
            }
        )
    return pd.DataFrame(table)


def test_the_kernel_scaling_claim_reads_the_interleaved_group():
    (claim,) = [c for c in load_claims() if c.id == "complexity.na.time_kernel"]
    ks, rows = planted(1.6)
    (grouped,) = judge(_kernel_rows(ks, rows, True), [claim])
    assert grouped.verdict == PASS and "interleaved in 5 processes" in grouped.provenance
    assert abs(grouped.measured - 2.0) < 0.01
    import pandas as pd

    frame = _kernel_rows(ks, rows, True)
    (twice,) = judge(pd.concat([frame, frame.tail(1)], ignore_index=True), [claim])  # one row read twice
    assert twice.band == grouped.band and "in 5 processes" in twice.provenance
    (separate,) = judge(_kernel_rows(ks, rows, False), [claim])
    assert "interleaved" not in separate.provenance
    assert separate.band[1] - separate.band[0] > 5 * (grouped.band[1] - grouped.band[0])


def _nat_tiny_rows(with_group: bool):
    """NAT-T's k5 / k7 / k9 rows of one sweep: separate rows whose processes met different spells, and the group
    that timed the three in the same processes (k5 at 0.9x and k9 at 1.15x k7's latency in every process)."""
    import pandas as pd

    speed = [1.0, 1.6, 1.1, 1.3, 1.0]  # each process's machine speed
    common = {"status": "ok", "device": "cpu", "device_name": "CPU X", "backend": "auto", "dtype": "float32"}
    common.update(mode="inference", batch=1, resolution=224, repeats=5, timestamp="t", preset="cpu-quick")
    common.update(machine="cpu:X:1t", threads=1, kind="model", target="nat_tiny")
    factor = {5: 0.9, 7: 1.0, 9: 1.15}
    table = []
    for k, f in factor.items():
        # separate rows: their processes ran at other moments (the order of the speeds rotated)
        own = [100.0 * f * s for s in speed[k % 5 :] + speed[: k % 5]]
        low, high = min(own), max(own)
        table.append(
            {**common, "case_id": f"nat-tiny-k{k}", "kernel_size": k, "latency_ms": float(np.median(own))}
            | {"latency_ci_low_ms": low, "latency_ci_high_ms": high, "latency_process_ms": own}
            | {"throughput": 1e3 / float(np.median(own))}
        )
    if with_group:
        table.append(
            {**common, "case_id": "group-nat-tiny-kernel-size-x", "kind": "group", "kernel_size": None}
            | {"group_of": [f"nat-tiny-k{k}" for k in factor], "group_axis": "kernel_size"}
            | {"group_values": list(factor), "throughput": None, "latency_ms": None}
            | {"member_process_ms": [[100.0 * f * s for s in speed] for f in factor.values()]}
        )
    return pd.DataFrame(table)


def test_model_ratio_claims_read_the_group_that_timed_both_members():
    claims = {c.id: c for c in load_claims()}
    k5, k9 = (claims[f"dinat.cpu.nat_tiny.throughput_k{k}_vs_k7"] for k in (5, 9))
    grouped = judge(_nat_tiny_rows(True), [k5, k9])
    separate = judge(_nat_tiny_rows(False), [k5, k9])
    for g, s, want in zip(grouped, separate, (1 / 0.9, 1 / 1.15), strict=True):
        # throughput k / k7 = latency k7 / k, from each process's two members: the machine's speed cancels
        assert g.measured == pytest.approx(want) and g.band[1] - g.band[0] < 1e-9
        assert "processes timing a group interleaved" in g.groups[0]["band_source"]
        assert "group" not in s.groups[0]["band_source"] and s.band[1] - s.band[0] > 0.1
