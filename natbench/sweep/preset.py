"""Sweep presets: TOML files listing grids of cases (cartesian products) plus sweep settings.

    description = "what the preset is for"

    [settings]              # optional: per-case timeout (s), memory_limit_gb (CPU), threads, timer settings
    timeout = 120
    min_run_time = 0.5

    [defaults]              # optional: fields every grid starts from
    device = "cpu"

    [[grid]]                # one cartesian product: a list is a dimension, a scalar a fixed field
    target = ["window", "full"]
    resolution = [14, 28, 56]

    [[pair]]                # optional: latency ratios numerator / denominator, timed interleaved
    resolution = [56, 112]  # shared fields (lists are dimensions), on top of [defaults]
    kernel_size = 7
    numerator = { target = "na", backend = "tiled" }
    denominator = { target = "window", shifted = true }

    [[group]]               # optional: cases along one axis, timed interleaved (a scaling fit across them)
    axis = "kernel_size"    # the field that varies within a group (a list below); other lists: one group each
    target = "na"
    resolution = 56
    kernel_size = [5, 7, 9, 11, 13]

`repeats` (setting, default 5): fresh processes per case, per pair and per group. A pair adds a kind="pair"
row with the ratio and its interval, a group a kind="group" row with each member's per-process medians; their
members are also run as ordinary cases. `reruns` (default 0.4): the
share of `repeats` a case may run again when processes were slowed by the machine (natbench.measure.repeat);
`rerun_seconds` (default: no limit): no re-run starts later than this after the re-run passes began, so that a
busy spell does not stretch the sweep (0: no re-runs).

Fields are those of natbench.measure.spec.CaseSpec; fields that do not apply to a target are dropped, and
equal cases are run once.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from natbench.measure.spec import FIELD_NAMES, CaseSpec, coerce
from natbench.measure.targets import validate_targets  # noqa: F401  (re-exported: sweeps check targets)
from natbench.measure.timer import TimerConfig

TOP_KEYS = ("description", "settings", "defaults", "grid", "pair", "group")
PAIR_KEYS = ("numerator", "denominator")
RUN_SETTINGS = {
    "timeout": (int, float),
    "memory_limit_gb": (int, float),
    "threads": (int,),
    "repeats": (int,),
    "reruns": (int, float),
    "rerun_seconds": (int, float),
}
TIMER_SETTINGS = tuple(TimerConfig.__dataclass_fields__)


@dataclass
class Preset:
    name: str
    description: str
    grids: list[dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    pairs: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        from natbench.measure.repeat import DEFAULT_REPEATS

        return self.settings.get("repeats", DEFAULT_REPEATS)

    @property
    def reruns(self) -> float | None:
        return self.settings.get("reruns")

    @property
    def rerun_seconds(self) -> float | None:
        return self.settings.get("rerun_seconds")

    @property
    def timeout(self) -> float | None:
        return self.settings.get("timeout")

    @property
    def memory_limit(self) -> int | None:
        gb = self.settings.get("memory_limit_gb")
        return int(gb * 2**30) if gb else None

    @property
    def threads(self) -> int | None:
        return self.settings.get("threads")

    @property
    def timing(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k in TIMER_SETTINGS}


def available_presets() -> list[str]:
    folder = resources.files("natbench.sweep") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str | Path) -> Preset:
    """A bundled preset by name (`smoke`) or a preset file by path (`my/grid.toml`)."""
    text_path = str(name_or_path)
    if text_path.endswith(".toml") or "/" in text_path or Path(text_path).is_file():
        path = Path(text_path)
        if not path.is_file():
            raise FileNotFoundError(f"preset file {path} does not exist")
        text, name = path.read_text(encoding="utf-8"), path.stem
    else:
        names = available_presets()
        if text_path not in names:
            raise ValueError(
                f"unknown preset {text_path!r}; available presets: {', '.join(names)} "
                "(or pass the path of a .toml file)"
            )
        text = (resources.files("natbench.sweep") / "presets" / f"{text_path}.toml").read_text(
            encoding="utf-8"
        )
        name = text_path
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"preset {name}: invalid TOML: {exc}") from None
    return parse_preset(data, name, str(name_or_path))


def parse_preset(data: dict[str, Any], name: str, source: str = "") -> Preset:
    where = f"preset {name}"
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid top-level keys: {', '.join(TOP_KEYS)}")
    settings = data.get("settings", {})
    valid_settings = [*RUN_SETTINGS, *TIMER_SETTINGS]
    bad = sorted(set(settings) - set(valid_settings))
    if bad:
        raise ValueError(f"{where}: unknown setting(s) {bad}; valid settings: {', '.join(valid_settings)}")
    for key, types in RUN_SETTINGS.items():
        if key not in settings:
            continue
        value = settings[key]
        if key == "reruns":  # a share of repeats
            bad = not isinstance(value, types) or not 0 <= value <= 1
        elif key == "rerun_seconds":  # 0: no re-runs
            bad = not isinstance(value, types) or not (value >= 0 and math.isfinite(value))
        else:
            bad = not isinstance(value, types) or not (value > 0 and math.isfinite(value))
        if bad:
            kind = {"reruns": "a share of repeats from 0 to 1", "rerun_seconds": "a finite number >= 0"}.get(
                key, "a positive, finite number"
            )
            raise ValueError(f"{where}: setting {key} must be {kind}, got {value!r}")
    try:
        TimerConfig.from_dict({k: v for k, v in settings.items() if k in TIMER_SETTINGS})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad timer setting: {exc}") from None
    grids = data.get("grid")
    if not isinstance(grids, list) or not grids:
        raise ValueError(f"{where}: needs at least one [[grid]] table")
    defaults = data.get("defaults", {})
    for label, table in [("defaults", defaults)] + [(f"grid {i + 1}", g) for i, g in enumerate(grids)]:
        _check_table(table, f"{where}, {label}")
    pairs = data.get("pair", [])
    if not isinstance(pairs, list):
        raise ValueError(f"{where}: pair must be an array of tables ([[pair]])")
    for i, pair in enumerate(pairs):
        label = f"{where}, pair {i + 1}"
        if not isinstance(pair, dict) or any(not isinstance(pair.get(k), dict) for k in PAIR_KEYS):
            raise ValueError(f"{label}: needs numerator = {{...}} and denominator = {{...}} tables of fields")
        _check_table({k: v for k, v in pair.items() if k not in PAIR_KEYS}, label)
        for k in PAIR_KEYS:
            _check_table(pair[k], f"{label}, {k}")
            if any(isinstance(v, list) for v in pair[k].values()):
                raise ValueError(f"{label}, {k}: fields must be single values (put lists in the pair itself)")
    groups = data.get("group", [])
    if not isinstance(groups, list):
        raise ValueError(f"{where}: group must be an array of tables ([[group]])")
    for i, group in enumerate(groups):
        label = f"{where}, group {i + 1}"
        if not isinstance(group, dict):
            raise ValueError(f"{label}: must be a table of case fields with an axis")
        axis = group.get("axis")
        if axis not in FIELD_NAMES:
            raise ValueError(
                f"{label}: needs axis = one of the case fields ({', '.join(FIELD_NAMES)}), got {axis!r}"
            )
        _check_table({k: v for k, v in group.items() if k != "axis"}, label)
        values = {**defaults, **group}.get(axis)
        if not isinstance(values, list) or len(values) < 2:
            raise ValueError(f"{label}: the axis {axis} needs a list of at least two values")
    return Preset(name, str(data.get("description", "")), grids, defaults, settings, source, pairs, groups)


def _check_table(table: Any, where: str) -> None:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table of case fields")
    unknown = sorted(set(table) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid fields: {', '.join(FIELD_NAMES)}")
    for key, value in table.items():
        if isinstance(value, list) and not value:
            raise ValueError(f"{where}: {key} is an empty list; give at least one value")
        if isinstance(value, dict):
            raise ValueError(f"{where}: {key} must be a value or a list of values, got a table")


def parse_grid_overrides(items: list[str] | dict[str, Any] | None) -> dict[str, list[Any]]:
    """`["resolution=14,28", "dtype=fp16"]` (or a dict) -> {"resolution": [14, 28], "dtype": ["float16"]}."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [_split(item) for item in items]
    out: dict[str, list[Any]] = {}
    for key, values in pairs:
        if key not in FIELD_NAMES:
            raise ValueError(f"unknown grid key {key!r}; valid keys: {', '.join(FIELD_NAMES)}")
        values = values if isinstance(values, list) else [values]
        if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
            values = [v.strip() for v in values[0].split(",") if v.strip()]
        if not values:
            raise ValueError(f"grid key {key!r} needs at least one value, e.g. {key}=v1,v2")
        out[key] = [coerce(key, v) for v in values]
    return out


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ValueError(f"a grid override looks like key=v1,v2, got {item!r}")
    key, values = item.split("=", 1)
    return key.strip(), values


def expand(preset: Preset, overrides: dict[str, list[Any]] | None = None) -> list[CaseSpec]:
    """Every case of the preset, in a stable order, once each.

    An override replaces its field in every grid that sets it (directly or through defaults); a field no
    grid sets is added to every grid.
    """
    overrides = overrides or {}
    mentioned = {k for g in preset.grids for k in g} | set(preset.defaults)
    cases: dict[str, CaseSpec] = {}
    for i, grid in enumerate(preset.grids):
        table = {**preset.defaults, **grid}
        for key, values in overrides.items():
            if key in table or key not in mentioned:
                table[key] = values
        keys = list(table)
        dims = [v if isinstance(v, list) else [v] for v in table.values()]
        for combo in itertools.product(*dims):
            try:
                spec = CaseSpec.from_dict(dict(zip(keys, combo)))
            except ValueError as exc:
                raise ValueError(f"preset {preset.name}, grid {i + 1}: {exc}") from None
            cases.setdefault(spec.case_id, spec)
    pairs = _expand_pairs(preset, overrides, mentioned, cases)
    known = {**cases, **{s.case_id: s for s in pairs}}
    return list(cases.values()) + pairs + _expand_groups(preset, overrides, mentioned, known)


def _expand_pairs(preset: Preset, overrides, mentioned, cases: dict[str, CaseSpec]) -> list:
    """The preset's pairs (PairSpec), each followed by its members not already among `cases`."""
    from natbench.measure.repeat import PairSpec

    out: dict[str, Any] = {}
    for i, pair in enumerate(preset.pairs):
        table = {**preset.defaults, **{k: v for k, v in pair.items() if k not in PAIR_KEYS}}
        sides = {k: dict(pair[k]) for k in PAIR_KEYS}
        for key, values in overrides.items():
            in_sides = any(key in side for side in sides.values())
            if key in table or in_sides or key not in mentioned:
                table[key] = values
            for side in sides.values():  # an override replaces a member's own value too
                side.pop(key, None)
        keys = list(table)
        dims = [v if isinstance(v, list) else [v] for v in table.values()]
        for combo in itertools.product(*dims):
            shared = dict(zip(keys, combo))
            try:
                a = CaseSpec.from_dict({**shared, **sides["numerator"]})
                b = CaseSpec.from_dict({**shared, **sides["denominator"]})
            except ValueError as exc:
                raise ValueError(f"preset {preset.name}, pair {i + 1}: {exc}") from None
            if a.case_id == b.case_id:
                continue  # the overrides made both members one case: nothing to compare
            spec = PairSpec(a, b)
            out.setdefault(spec.case_id, spec)
            for member in (a, b):
                if member.case_id not in cases:
                    out.setdefault(member.case_id, member)
    return list(out.values())


def _expand_groups(preset: Preset, overrides, mentioned, cases: dict[str, Any]) -> list:
    """The preset's groups (GroupSpec), each followed by its members not already among `cases`."""
    from natbench.measure.group import GroupSpec

    out: dict[str, Any] = {}
    for i, group in enumerate(preset.groups):
        axis = group["axis"]
        table = {**preset.defaults, **{k: v for k, v in group.items() if k != "axis"}}
        for key, values in overrides.items():
            if key in table or key not in mentioned:
                table[key] = values
        axis_values = table.pop(axis)
        axis_values = axis_values if isinstance(axis_values, list) else [axis_values]
        keys = list(table)
        dims = [v if isinstance(v, list) else [v] for v in table.values()]
        for combo in itertools.product(*dims):
            shared = dict(zip(keys, combo))
            try:
                members = {}
                for value in axis_values:
                    spec = CaseSpec.from_dict({**shared, axis: value})
                    members.setdefault(spec.case_id, spec)
                if len(members) < 2:
                    continue  # an override left one member: nothing to fit across
                spec = GroupSpec(tuple(members.values()), axis)
            except ValueError as exc:
                raise ValueError(f"preset {preset.name}, group {i + 1}: {exc}") from None
            out.setdefault(spec.case_id, spec)
            for member in members.values():
                if member.case_id not in cases:
                    out.setdefault(member.case_id, member)
    return list(out.values())


def shard(specs: list[CaseSpec], index: int, count: int) -> list[CaseSpec]:
    """Shard `index` of `count` (0-based): every count-th case from index; the shards partition the cases."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be I/N with 0 <= I < N, got {index}/{count}")
    return specs[index::count]


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if text is None or isinstance(text, tuple):
        return text
    try:
        index, count = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be I/N with 0 <= I < N, got {text!r}")
    return index, count
