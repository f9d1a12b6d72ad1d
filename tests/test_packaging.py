"""Dependencies are ranges (a GPU image's own torch must satisfy them); constraints-cpu.txt is the tested set."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def _constraints():
    pins = {}
    for line in (ROOT / "constraints-cpu.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_core_dependencies_are_ranges_that_a_gpu_image_satisfies():
    reqs = _requirements()
    for name in ("torch", "torchvision", "natten"):
        assert not any(s.operator == "==" for s in reqs[name].specifier), f"{name} is pinned"
    assert reqs["torch"].specifier.contains("2.11.0")  # the H100 / H200 image's torch
    assert reqs["natten"].specifier.contains("0.21.7")


def test_constraints_pin_every_dependency_inside_its_range():
    reqs, pins = _requirements(), _constraints()
    assert set(reqs) <= set(pins), f"not pinned: {sorted(set(reqs) - set(pins))}"
    for name, req in reqs.items():
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"
