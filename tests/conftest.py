"""Tests never read this machine's natbench cache (a drift profile there would widen their rows); the noxfile
is loaded once (nox registers its sessions at import, and a second import re-registers them)."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def noxfile():
    spec = importlib.util.spec_from_file_location(
        "natbench_noxfile", Path(__file__).parents[1] / "noxfile.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NATBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("natbench-cache")))
    monkeypatch.delenv("NATBENCH_DRIFT_PROFILE", raising=False)
