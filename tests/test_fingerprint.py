"""A case's environment fingerprint: what changes it (machine, threads, versions, timer) and what does not."""

from __future__ import annotations

import copy

from natbench.env import collect, fingerprint, gpu_index, machine_key


def test_fingerprint_follows_the_environment_not_the_host():
    env = copy.deepcopy(collect())
    base = fingerprint(env, "cpu", 2, {})
    assert base == fingerprint(env, "cpu", 2, {"min_run_time": 0.5})  # the defaults, spelled out
    assert base != fingerprint(env, "cpu", 1, {})
    assert base != fingerprint(env, "cpu", 2, {"min_run_time": 0.1})
    for key, value in (("torch", "0.0"), ("natten", "0.0"), ("natbench", "0.0")):
        changed = copy.deepcopy(env)
        changed["packages"][key] = value
        assert fingerprint(changed, "cpu", 2, {}) != base, key
    changed = copy.deepcopy(env)
    changed["git_sha"] = "another"
    assert fingerprint(changed, "cpu", 2, {}) != base
    changed = copy.deepcopy(env)
    changed["hostname"] = "node-17"  # an identical node of a cluster measures the same series
    assert fingerprint(changed, "cpu", 2, {}) == base
    changed["cpu"]["model"] = "Another CPU"
    assert fingerprint(changed, "cpu", 2, {}) != base


def test_machine_keys_and_gpu_index(monkeypatch):
    env = {"cpu": {"model": "AMD EPYC 7B13"}, "torch_threads": 2, "gpu": {"name": "NVIDIA H200"}}
    assert machine_key(env, "cpu") == "cpu:AMD EPYC 7B13:2t"
    assert machine_key(env, "cpu", 1) == "cpu:AMD EPYC 7B13:1t"
    assert machine_key(env, "cuda") == "cuda:NVIDIA H200"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpu_index() == 3
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_index() is None
