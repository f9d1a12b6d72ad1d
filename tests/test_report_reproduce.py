"""natbench reproduce wires sweep -> claims -> report; paper numbers of the report agree with the registry."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

import yaml

import natbench.sweep
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


def test_paper_numbers_from_the_registry_match_the_shipped_file():
    shipped = yaml.safe_load(resources.files("natbench.report").joinpath("paper_figures.yaml").read_text())
    paper = report_data.paper_figures()
    assert any(i.startswith("nat.natten.speed.") for i in paper["registry"])
    assert paper["na_vs_wsa"]["speed_tiled_cuda"] == shipped["na_vs_wsa"]["speed_tiled_cuda"]
    assert paper["na_vs_wsa"]["memory_tiled_cuda"] == shipped["na_vs_wsa"]["memory_tiled_cuda"]
    for name, row in shipped["table3"]["models"].items():
        for key in ("params_m", "gmacs", "top1"):
            assert paper["table3"]["models"][name][key] == row[key], (name, key)
