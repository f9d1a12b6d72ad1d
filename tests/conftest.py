"""Tests never read this machine's natbench cache (a drift profile there would widen their rows)."""

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NATBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("natbench-cache")))
    monkeypatch.delenv("NATBENCH_DRIFT_PROFILE", raising=False)
