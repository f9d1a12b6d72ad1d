"""Sweeps: presets (TOML grids of cases) run case by case in fresh processes into a results directory."""


def run_sweep(preset, out, grid=None, shard=None, progress=True, **kwargs):
    """See natbench.sweep.runner.run_sweep."""
    from natbench.sweep.runner import run_sweep as _run_sweep

    return _run_sweep(preset, out, grid=grid, shard=shard, progress=progress, **kwargs)


__all__ = ["run_sweep"]
