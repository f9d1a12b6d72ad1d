"""natbench reproduce wires sweep -> claims -> report; paper numbers of the report agree with the registry."""

from __future__ import annotations

import json
from collections import Counter

import natbench.sweep
from natbench.claims import load_claims
from natbench.cli import main as cli_main
from natbench.report import data as report_data


def test_reproduce_writes_claims_and_site(tmp_path, monkeypatch, capsys):
    from test_report import make_results

    calls = []

    def fake_sweep(preset, out, **kwargs):  # the sweep itself is tested with natbench.sweep
        calls.append(preset)
        make_results(out, claims=False)

    monkeypatch.setattr(natbench.sweep, "run_sweep", fake_sweep)
    out = tmp_path / "run"
    assert cli_main(["reproduce", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    assert calls == ["smoke"]
    claims = json.loads((out / "claims.json").read_text())
    from natbench.claims import judge
    from natbench.results import load

    assert [c["id"] for c in claims] == [v.id for v in judge(load(out))]
    counts = Counter(c["verdict"] for c in claims)
    printed = capsys.readouterr().out
    for verdict in ("PASS", "FAIL", "INCONCLUSIVE", "SKIP"):
        assert f"{verdict} {counts.get(verdict, 0)}" in printed
    assert (out / "site" / "index.html").is_file()
    page = (out / "site" / "claims.html").read_text()
    assert all(c["id"] in page for c in claims)


def test_reproduce_rejects_a_missing_history_dir(tmp_path, capsys):
    code = cli_main(["reproduce", "--out", str(tmp_path / "o"), "--history", str(tmp_path / "nope")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_paper_numbers_come_from_the_registry():
    paper = report_data.paper_figures()
    claims = {c.id: c for c in load_claims()}
    assert paper["registry"] and all(i in claims for i in paper["registry"])
    wsa = paper["na_vs_wsa"]
    assert (
        wsa["speed_tiled_cuda"][wsa["resolutions"].index(56)] == 100 * claims["nat.natten.speed.r56"].expected
    )
    assert len(wsa["speed_plain_pytorch"]) == 6 and len(wsa["memory_tiled_cuda"]) == 9
    tiny = paper["table3"]["models"]["nat_tiny"]
    assert (tiny["throughput"], tiny["memory_gb"], tiny["top1"]) == (1541, 2.5, 83.2)
    assert all(
        {"params_m", "gmacs", "throughput", "memory_gb", "top1"} <= set(m)
        for m in paper["table3"]["models"].values()
    )
