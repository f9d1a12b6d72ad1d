"""natbench report: a site from synthetic results, its numbers, and a headless-Chromium load check."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest

from natbench.cli import main as cli_main
from natbench.report import build_site
from natbench.report import data as report_data
from natbench.results import append_row

PAGES = [
    "index.html",
    "latency.html",
    "ratio.html",
    "memory.html",
    "models.html",
    "claims.html",
    "accuracy.html",
    "provenance.html",
    "history.html",
]


def op_row(target, backend, res, k, ms, mem, status="ok", **extra):
    row = {
        "case_id": f"op-{target}-{backend}-r{res}-k{k}",
        "status": status,
        "kind": "op",
        "target": target,
        "backend": backend,
        "device": "cpu",
        "dtype": "float32",
        "mode": "inference",
        "batch": 1,
        "resolution": res,
        "kernel_size": k,
        "dilation": 1 if target == "na" else None,
        "heads": 2,
        "head_dim": 32,
        "tokens": res * res,
        "latency_ms": ms,
        "latency_iqr_ms": ms * 0.02 if ms else None,
        "peak_mem_bytes": mem,
    }
    row.update(extra)
    return row


def make_results(directory, scale=1.0, claims=True):
    """Synthetic set: NA costs 2 us/token at k=7, window 3 us/token (both ~k^2), full 1 ns * tokens^2;
    one model, one failure."""
    for res in (8, 16, 32, 64, 128):
        n = res * res
        append_row(directory, op_row("na", "tiled", res, 7, scale * 2e-3 * n, 1000 * n))
        append_row(directory, op_row("window", "torch", res, 7, scale * 3e-3 * n, 1250 * n))
        append_row(directory, op_row("full", "torch", res, None, scale * 1e-6 * n * n, 10 * n * n))
    for k in (3, 5, 9, 11):  # kernel sweep at 32x32: cost grows as k^2
        n, f = 32 * 32, (k / 7) ** 2
        append_row(directory, op_row("na", "tiled", 32, k, scale * 2e-3 * n * f, 1000 * n * f))
        append_row(directory, op_row("window", "torch", 32, k, scale * 3e-3 * n * f, 1250 * n * f))
    append_row(
        directory,
        op_row(
            "na",
            "natten",
            64,
            7,
            None,
            None,
            status="unsupported",
            error="natten on CPU is limited to maps <= 28x28",
        ),
    )
    append_row(
        directory,
        {
            "case_id": "model-nat_mini-224",
            "status": "ok",
            "kind": "model",
            "target": "nat_mini",
            "backend": "auto",
            "device": "cpu",
            "dtype": "float32",
            "mode": "inference",
            "batch": 1,
            "resolution": 224,
            "latency_ms": 100.0 * scale,
            "latency_iqr_ms": 1.0,
            "throughput": 10.0 / scale,
            "params": 20_000_000,
            "macs": 2_700_000_000,
            "peak_mem_bytes": 500_000_000,
        },
    )
    (directory / "env.json").write_text(
        json.dumps({"python": "3.11.0", "device": "cpu", "git_sha": "abc123", "packages": {"torch": "2.x"}})
    )
    if claims:
        (directory / "claims.json").write_text(
            json.dumps(
                [
                    {
                        "id": "na-linear",
                        "verdict": "PASS",
                        "reason": "exponent 1.00 within 0.9-1.2",
                        "source": "NAT paper",
                        "kind": "op",
                        "expected": "1",
                        "measured": "1.00",
                        "statement": "NA is linear in tokens",
                    },
                    {
                        "id": "nat-top1",
                        "verdict": "SKIP",
                        "reason": "no ImageNet here",
                        "source": "NAT Table 3",
                        "kind": "accuracy",
                        "expected": "81.8",
                        "measured": None,
                        "statement": "NAT-Mini top-1 81.8",
                    },
                ]
            )
        )
    return directory


@pytest.fixture()
def two_sets(tmp_path):
    return make_results(tmp_path / "old"), make_results(tmp_path / "new", scale=1.5, claims=False)


def test_scaling_exponents_and_ratios_match_the_planted_costs(two_sets):
    frame = report_data.load_results([two_sets[1]])
    groups = report_data.scaling_groups(frame, "latency_ms")
    assert len(groups) == 1 and groups[0]["kernel_size"] == 7
    exponents = {s["name"]: s["exponent"] for s in groups[0]["series"]}
    assert exponents["NA tiled"] == pytest.approx(1.0, abs=1e-9)
    assert exponents["window"] == pytest.approx(1.0, abs=1e-9)
    assert exponents["full"] == pytest.approx(2.0, abs=1e-9)
    kernels = report_data.kernel_groups(frame, "latency_ms")
    assert [g["resolution"] for g in kernels] == [32]
    by_kernel = {s["name"]: s for s in kernels[0]["series"]}
    assert by_kernel["NA tiled"]["x"] == [3, 5, 7, 9, 11]
    assert by_kernel["NA tiled"]["exponent"] == pytest.approx(2.0, abs=1e-9)
    assert not any("interleaved" in s["name"] for s in kernels[0]["series"])
    # a group timed the kernel sizes interleaved: its own series, fitted from its processes (one ran 1.5x slow)
    sizes = [11, 3, 5, 7, 9]
    group = {
        **op_row("na", "tiled", 32, None, None, None),
        "case_id": "group-na-kernel-size-x",
        "kind": "group",
        "dilation": 1,
        "tokens": None,
        "group_axis": "kernel_size",
        "group_values": sizes,
        "member_ms": [float(k * k) for k in sizes],
        "member_process_ms": [[k * k * m for m in (1.0, 1.5, 1.01)] for k in sizes],
    }
    append_row(two_sets[1], group)
    frame = report_data.load_results([two_sets[1]])
    (grouped,) = [
        s for s in report_data.kernel_groups(frame, "latency_ms")[0]["series"] if "interleaved" in s["name"]
    ]
    assert grouped["name"] == "NA tiled (interleaved)" and grouped["x"] == [3, 5, 7, 9, 11]
    assert grouped["value"] == [9.0, 25.0, 49.0, 81.0, 121.0]
    assert grouped["exponent"] == pytest.approx(2.0, abs=1e-6) and grouped["ci"][1] - grouped["ci"][0] < 1e-6
    assert not report_data.kernel_groups(frame, "peak_mem_bytes")[0]["series"][-1]["name"].endswith(
        "(interleaved)"
    )
    # a group of a model's kernel sizes at the same shape (cpu-quick's NAT-T 5, 7, 9) is no op's series
    append_row(two_sets[1], {**group, "case_id": "group-nat-tiny-kernel-size-x", "target": "nat_tiny"})
    frame = report_data.load_results([two_sets[1]])
    names = [s["name"] for s in report_data.kernel_groups(frame, "latency_ms")[0]["series"]]
    assert sum("interleaved" in n for n in names) == 1
    pairs = report_data.na_vs_window(frame)
    assert len(pairs) == 9 and set(pairs["backend"]) == {"tiled"}
    # window 3 us/token vs NA 2 us/token: NA runs at 150 % of window speed with 80 % of its memory
    assert pairs["relative_speed_pct"].tolist() == pytest.approx([150.0] * 9)
    assert pairs["relative_memory_pct"].tolist() == pytest.approx([80.0] * 9)


def test_site_has_every_page_figure_and_number(two_sets, tmp_path):
    site = tmp_path / "site"
    index = build_site(list(two_sets), site)
    assert index == site / "index.html"
    for page in PAGES:
        assert (site / page).is_file(), page
    figures = sorted(p.name for p in (site / "figures").iterdir())
    assert figures == [
        "history.png",
        "latency-0.png",
        "latency-kernel-0.png",
        "memory-0.png",
        "memory-kernel-0.png",
        "na-vs-window-kernel.png",
        "na-vs-window-memory.png",
        "na-vs-window-speed.png",
    ]
    for f in (site / "figures").iterdir():
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ratio = (site / "ratio.html").read_text()
    assert "150" in ratio and "114" in ratio  # ours and the paper's first point
    latency = (site / "latency.html").read_text()
    assert re.search(r"NA tiled</td><td>1(\.0+)? \[1(\.0+)?, 1(\.0+)?\]</td>", latency)
    assert re.search(r"full</td><td>2(\.0+)? \[2(\.0+)?, 2(\.0+)?\]</td>", latency)
    models = (site / "models.html").read_text()
    assert "nat_mini" in models and "2.7" in models and "2,135" in models
    claims = (site / "claims.html").read_text()
    assert "na-linear" in claims and "no ImageNet here" in claims
    assert "no claims.json in this directory" in claims  # the second set has none
    index_html = (site / "index.html").read_text()
    assert "natten on CPU is limited" in index_html
    history = (site / "history.html").read_text()
    # the new set is 1.5x slower: 64x64 NA goes from 8.192 ms to 12.288 ms
    assert "8.19" in history and "12.3" in history
    assert "no data" in (site / "accuracy.html").read_text()
    assert "abc123" in (site / "provenance.html").read_text()


def test_empty_kinds_render_no_data(tmp_path):
    d = tmp_path / "only-failures"
    append_row(d, op_row("na", "natten", 64, 7, None, None, status="error", error="boom"))
    site = tmp_path / "site"
    build_site([d], site)
    for page in (
        "latency.html",
        "ratio.html",
        "memory.html",
        "models.html",
        "claims.html",
        "accuracy.html",
        "history.html",
    ):
        assert "no data" in (site / page).read_text(), page
    assert not list((site / "figures").iterdir())


def test_cli_errors_clearly_for_a_missing_directory(tmp_path, capsys):
    assert cli_main(["report", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "s")]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err


def test_report_fits_with_the_claims_fitter_and_needs_five_sizes():
    from natbench.measure.stats import fit_power_law

    assert report_data.fit_exponent([1, 4, 16, 64], [1.0, 2.0, 4.0, 8.0]) is None
    x4 = [1, 4, 16, 64, 256]
    assert report_data.fit_exponent(x4, [3.0, 6.0, 12.0, 24.0, 48.0]) == pytest.approx(
        math.log(2) / math.log(4)
    )
    x, y = [1, 4, 16, 64, 256, 1024], [1.0, 2.5, 5.0, 13.0, 24.0, 50.0]
    ours = report_data.fit(x, y)  # the 5 largest sizes, as the claims
    assert ours == fit_power_law(x[1:], y[1:]) and ours.ci_low < ours.exponent < ours.ci_high


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="Chromium / chromedriver not installed (apt-get install -y chromium chromium-driver); CI installs them",
)


@needs_chromium
def test_site_loads_in_headless_chromium(two_sets, tmp_path):
    from natbench.report.check import check_site, inspect_pages

    site = tmp_path / "site"
    build_site(list(two_sets), site)
    pages = inspect_pages(site)
    assert sorted(pages) == sorted(PAGES)
    images = [img for page in pages.values() for img in page["images"]]
    assert len(images) == 8 and all(img["naturalWidth"] > 0 for img in images)
    assert all(len(page["links"]) >= len(PAGES) for page in pages.values())
    assert check_site(site) == []
    # the check can fail: a missing figure and a dead link are reported
    (site / "figures" / "history.png").unlink()
    html = (site / "index.html").read_text().replace('href="models.html"', 'href="gone.html"')
    (site / "index.html").write_text(html)
    problems = check_site(site)
    assert any("history.png" in p for p in problems)
    assert any("gone.html" in p for p in problems)


def two_machine_results(directory):
    """One directory, two machines: machine B takes twice as long and is never averaged with A."""
    for machine, scale in (("cpu:CPU-A:2t", 1.0), ("cpu:CPU-B:2t", 2.0)):
        for res in (8, 16, 32, 64, 128):
            n = res * res
            for target, per_token in (("na", 2e-3), ("window", 3e-3)):
                row = op_row(
                    target, "tiled" if target == "na" else "torch", res, 7, scale * per_token * n, 1000 * n
                )
                row.update(case_id=row["case_id"], machine=machine, fingerprint=machine[-8:])
                append_row(directory, row)


def test_two_machines_in_one_directory_are_two_series(tmp_path):
    two_machine_results(tmp_path)
    frame = report_data.load_results([tmp_path])
    assert len(frame) == 20  # same case ids, two fingerprints: both kept
    (group,) = [g for g in report_data.scaling_groups(frame, "latency_ms") if g["kernel_size"] == 7]
    na = {s["name"]: s for s in group["series"] if s["name"].startswith("NA")}
    assert sorted(na) == ["NA tiled · cpu:CPU-A:2t", "NA tiled · cpu:CPU-B:2t"]
    a, b = na["NA tiled · cpu:CPU-A:2t"], na["NA tiled · cpu:CPU-B:2t"]
    assert b["value"] == pytest.approx([2 * v for v in a["value"]])  # not their average
    assert a["exponent"] == pytest.approx(1.0) and b["exponent"] == pytest.approx(1.0)
    pairs = report_data.na_vs_window(frame)
    assert len(pairs) == 10 and set(pairs["machine"]) == {"cpu:CPU-A:2t", "cpu:CPU-B:2t"}
    assert pairs["latency_ratio"].to_numpy() == pytest.approx(2 / 3)  # paired within a machine only
    site = tmp_path / "site"
    build_site([tmp_path], site)
    index = (site / "index.html").read_text()
    assert "cpu:CPU-A:2t; cpu:CPU-B:2t" in index
    assert "NA tiled · cpu:CPU-B:2t" in (site / "latency.html").read_text()


def test_report_counts_malformed_lines(tmp_path):
    two_machine_results(tmp_path)
    (rows,) = (tmp_path / "rows").glob("*.jsonl")
    with open(rows, "a") as fh:
        fh.write('{"case_id": "torn')
    with pytest.warns(UserWarning, match="malformed"):
        build_site([tmp_path], tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert "1 malformed (torn) line(s) skipped" in index and f"{rows}:21" in index


@needs_chromium
def test_two_machine_page_renders_in_chromium(tmp_path):
    from natbench.report.check import check_site, screenshot

    two_machine_results(tmp_path)
    build_site([tmp_path], tmp_path / "site")
    assert check_site(tmp_path / "site") == []
    png = screenshot(tmp_path / "site", "latency.html", tmp_path / "latency.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
