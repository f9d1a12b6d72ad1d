"""Claim data files: TOML, one per source, each with a `title` and a list of `[[claim]]` tables.

Every claim is validated here so that a typo in a data file fails with the file and claim named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DATA_DIR = Path(__file__).parent / "data"

KINDS = {
    "params": "parameter count of a model",
    "macs": "multiply-accumulates of one forward pass of a model",
    "top1": "ImageNet-1K top-1 accuracy %",
    "throughput_ratio": "images/s of one model over another's, same device and batch",
    "memory_ratio": "peak memory of one case over another's",
    "latency_ratio": "latency of one case over another's (relative speed)",
    "speedup": "latency of a baseline over latency of the faster implementation",
    "scaling_exponent": "slope of log(time or memory) against log(tokens)",
    "feature_shape": "shapes of a backbone's feature maps",
    "flops_rate": "achieved FLOP/s of an op",
}
TOLERANCE_MODES = {
    "absolute": "|measured - expected| <= value",
    "relative": "|measured - expected| <= value * |expected|",
    "at_least": "measured >= expected - value (value defaults to 0)",
    "at_most": "measured <= expected + value (value defaults to 0)",
    "exact": "measured == expected (shapes, lists)",
}
METHODS = {
    "model_info": {"model", "field", "resolution", "timm_model"},
    "backbone_shapes": {"model", "resolution"},
    "row": {"where", "field", "aggregate"},
    "top1": {"where", "aggregate"},
    "ratio": {"where", "numerator", "denominator", "field", "match", "aggregate", "op"},
    "scaling": {"where", "y", "x", "per", "largest", "min_points"},
    "rate": {"where", "aggregate"},
    "counted_flops": {"target", "x", "sizes", "fixed"},
    "unmeasurable": {"reason", "category"},
}
REQUIRED_MEASURE_KEYS = {
    "model_info": {"model", "field"},
    "backbone_shapes": {"model"},
    "row": {"field"},
    "top1": {"where"},
    "ratio": {"numerator", "denominator", "field"},
    "scaling": {"y"},
    "rate": set(),
    "counted_flops": {"target", "sizes"},
    "unmeasurable": {"reason"},
}
# each: every group must pass ("each", "every", "at every resolution"); best: "up to" (one group's band must
# clear the figure); mean / median: "on average"
AGGREGATES = ("each", "best", "mean", "median")
ONE_SIDED = ("at_least", "at_most")
POINT_KINDS = ("params", "macs", "feature_shape")
REQUIRES_KEYS = {"device", "dtype", "libnatten", "imagenet", "checkpoints", "gpu"}
DEVICES = ("cpu", "cuda", "any")
CLAIM_KEYS = {
    "id",
    "source",
    "statement",
    "kind",
    "expected",
    "expected_ratio",
    "tolerance",
    "requires",
    "measure",
    "presets",
    "unverified",
    "informative",
    "note",
}
REQUIRED_CLAIM_KEYS = ("id", "source", "statement", "kind", "tolerance", "measure")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


class ClaimError(ValueError):
    """A claim data file that does not follow the schema (the message names the file and claim)."""


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    statement: str
    kind: str
    expected: Any
    tolerance: dict[str, Any]
    measure: dict[str, Any]
    requires: dict[str, Any] = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    unverified: bool = False
    informative: bool = False  # measured and shown, never a FAIL of the paper (off its conditions)
    expected_ratio: tuple[float, float] | None = None  # the paper's two numbers behind a ratio
    note: str = ""
    file: str = ""
    title: str = ""

    @property
    def method(self) -> str:
        return self.measure["method"]


def _columns() -> set[str]:
    from natbench.results import COLUMNS

    return set(COLUMNS)


def _check_where(where: Any, where_name: str, fail) -> None:
    if not isinstance(where, dict):
        fail(f"{where_name} must be a table of result columns to values, got {where!r}")
    unknown = set(where) - _columns()
    if unknown:
        fail(f"{where_name} names unknown result columns {sorted(unknown)} (see natbench.results.COLUMNS)")


def _check_measure(measure: Any, fail) -> None:
    if not isinstance(measure, dict) or "method" not in measure:
        fail(f"measure must be a table with a `method` (one of {sorted(METHODS)})")
    method = measure["method"]
    if method not in METHODS:
        fail(f"unknown measure method {method!r}; known: {sorted(METHODS)}")
    keys = set(measure) - {"method"}
    unknown = keys - METHODS[method]
    if unknown:
        fail(f"measure method {method!r} does not take {sorted(unknown)}; it takes {sorted(METHODS[method])}")
    missing = REQUIRED_MEASURE_KEYS[method] - keys
    if missing:
        fail(f"measure method {method!r} needs {sorted(missing)}")
    for name in ("where", "numerator", "denominator"):
        if name in measure:
            _check_where(measure[name], f"measure.{name}", fail)
    cols = _columns()
    for name in ("field", "y", "x"):
        if name in measure and measure[name] not in cols and method not in ("model_info", "counted_flops"):
            fail(f"measure.{name} {measure[name]!r} is not a result column (see natbench.results.COLUMNS)")
    for name in ("match", "per"):
        if name in measure:
            bad = [c for c in measure[name] if c not in cols]
            if bad:
                fail(f"measure.{name} names unknown result columns {bad}")
    if measure.get("aggregate", "each") not in AGGREGATES:
        hint = " ('up to' claims: best)" if measure.get("aggregate") in ("max", "min") else ""
        fail(f"measure.aggregate must be one of {AGGREGATES}, got {measure['aggregate']!r}{hint}")
    if measure.get("op", "ratio") not in ("ratio", "difference"):
        fail(f"measure.op must be 'ratio' or 'difference', got {measure['op']!r}")
    if method == "counted_flops":
        if measure["target"] not in ("na", "window", "full"):
            fail(f"measure.target for counted_flops must be na, window or full, got {measure['target']!r}")
        if measure.get("x", "tokens") not in ("tokens", "kernel_tokens"):
            fail("measure.x for counted_flops must be 'tokens' or 'kernel_tokens'")
        sizes = measure["sizes"]
        if (
            not isinstance(sizes, list)
            or len(sizes) < 3
            or not all(isinstance(v, int) and v > 0 for v in sizes)
        ):
            fail(f"measure.sizes must list >= 3 positive ints, got {sizes!r}")
    if method == "model_info" and measure["field"] not in ("params", "macs"):
        fail(f"measure.field for model_info must be 'params' or 'macs', got {measure['field']!r}")
    for name in ("largest", "min_points", "resolution"):
        if name in measure and (not isinstance(measure[name], int) or measure[name] < 1):
            fail(f"measure.{name} must be a positive int, got {measure[name]!r}")


def _check_tolerance(tol: Any, fail) -> None:
    if not isinstance(tol, dict) or "mode" not in tol:
        fail(f"tolerance must be a table with `mode` (one of {sorted(TOLERANCE_MODES)}) and `value`")
    unknown = set(tol) - {"mode", "value", "why"}
    if unknown:
        fail(f"tolerance takes mode, value and why, not {sorted(unknown)}")
    mode = tol["mode"]
    if mode not in TOLERANCE_MODES:
        fail(f"unknown tolerance mode {mode!r}; known: {sorted(TOLERANCE_MODES)}")
    if mode in ("absolute", "relative") and "value" not in tol:
        fail(f"tolerance mode {mode!r} needs a `value`")
    value = tol.get("value", 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        fail(f"tolerance value must be a number >= 0, got {value!r}")


def _check_requires(req: Any, fail) -> None:
    if not isinstance(req, dict):
        fail(f"requires must be a table, got {req!r}")
    unknown = set(req) - REQUIRES_KEYS
    if unknown:
        fail(f"requires has unknown keys {sorted(unknown)}; known: {sorted(REQUIRES_KEYS)}")
    if req.get("device", "any") not in DEVICES:
        fail(f"requires.device must be one of {DEVICES}, got {req['device']!r}")
    for key in ("libnatten", "imagenet", "checkpoints"):
        if key in req and not isinstance(req[key], bool):
            fail(f"requires.{key} must be true or false, got {req[key]!r}")


def parse_claim(raw: dict[str, Any], file: str, title: str) -> Claim:
    """One validated Claim from a `[[claim]]` table; ClaimError names the file and claim otherwise."""
    label = raw.get("id", "<claim without id>") if isinstance(raw, dict) else "<not a table>"

    def fail(message: str):
        raise ClaimError(f"{file}: claim {label}: {message}")

    if not isinstance(raw, dict):
        fail("each [[claim]] entry must be a table")
    missing = [k for k in REQUIRED_CLAIM_KEYS if k not in raw]
    if missing:
        fail(f"missing required fields {missing}")
    unknown = set(raw) - CLAIM_KEYS
    if unknown:
        fail(f"unknown fields {sorted(unknown)}; allowed: {sorted(CLAIM_KEYS)}")
    if not isinstance(raw["id"], str) or not ID_PATTERN.match(raw["id"]):
        fail("id must be lowercase letters, digits, '.', '_' or '-'")
    for key in ("source", "statement"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            fail(f"{key} must be a non-empty string")
    if raw["kind"] not in KINDS:
        fail(f"unknown kind {raw['kind']!r}; known kinds: {sorted(KINDS)}")
    _check_tolerance(raw["tolerance"], fail)
    _check_measure(raw["measure"], fail)
    mode = raw["tolerance"]["mode"]
    if raw["measure"].get("aggregate") == "best" and mode not in ONE_SIDED:
        fail(f"an 'up to' claim (aggregate = best) needs a one-sided tolerance ({ONE_SIDED}), got {mode!r}")
    if raw["kind"] in POINT_KINDS and mode in ONE_SIDED:
        fail(f"{raw['kind']} claims are point figures: use a two-sided tolerance (absolute, relative, exact)")
    _check_requires(raw.get("requires", {}), fail)
    has_expected, has_ratio = "expected" in raw, "expected_ratio" in raw
    if (has_expected and has_ratio) or (
        not has_expected and not has_ratio and raw["measure"]["method"] != "unmeasurable"
    ):
        fail("give exactly one of `expected` or `expected_ratio = [numerator, denominator]`")
    expected = raw.get("expected")
    if has_ratio:
        pair = raw["expected_ratio"]
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, (int, float)) for v in pair)
            and pair[1] != 0
        ):
            fail(f"expected_ratio must be [numerator, denominator] with a non-zero denominator, got {pair!r}")
        expected = pair[0] / pair[1]
    mode = raw["tolerance"]["mode"]
    if mode == "exact":
        if not isinstance(expected, (list, int, str)):
            fail(f"tolerance mode 'exact' needs a list, int or string expected, got {expected!r}")
    elif expected is not None and (isinstance(expected, bool) or not isinstance(expected, (int, float))):
        fail(f"expected must be a number for tolerance mode {mode!r}, got {expected!r}")
    presets = raw.get("presets", [])
    if isinstance(presets, str):
        presets = [presets]
    if not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        fail("presets must be a list of sweep preset names")
    for key in ("unverified", "informative"):
        if not isinstance(raw.get(key, False), bool):
            fail(f"{key} must be true or false")
    return Claim(
        id=raw["id"],
        source=raw["source"],
        statement=raw["statement"],
        kind=raw["kind"],
        expected=expected,
        tolerance=dict(raw["tolerance"]),
        measure=dict(raw["measure"]),
        requires=dict(raw.get("requires", {})),
        presets=tuple(presets),
        unverified=raw.get("unverified", False),
        informative=raw.get("informative", False),
        expected_ratio=tuple(raw["expected_ratio"]) if has_ratio else None,
        note=raw.get("note", ""),
        file=file,
        title=title,
    )


def load_file(path: str | Path) -> list[Claim]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"claim file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ClaimError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"title", "defaults", "claim"}
    if unknown:
        raise ClaimError(
            f"{path}: unknown top-level keys {sorted(unknown)}; a claim file has `title`, [defaults] and [[claim]]"
        )
    raws = data.get("claim")
    if not isinstance(raws, list) or not raws:
        raise ClaimError(f"{path}: no [[claim]] tables")
    title = data.get("title", path.stem)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ClaimError(f"{path}: [defaults] must be a table")
    return [parse_claim(with_defaults(raw, defaults), str(path), title) for raw in raws]


def with_defaults(raw: Any, defaults: dict[str, Any]) -> Any:
    """A claim table over its file's [defaults]: `[defaults]` keys apply to every claim, `[defaults.<kind>]`
    to claims of that kind; tables merge key by key (nested tables too), the claim's own values win. A claim
    whose measure names another method than the default's takes none of the default's measure keys."""
    if not isinstance(raw, dict):
        return raw
    layers = [{k: v for k, v in defaults.items() if k not in KINDS}, defaults.get(raw.get("kind"), {})]
    out: dict[str, Any] = {}
    for layer in [*layers, raw]:
        for key, value in layer.items():
            base = out.get(key)
            if key == "measure" and isinstance(base, dict) and isinstance(value, dict):
                if value.get("method", base.get("method")) != base.get("method"):
                    base = {}
            out[key] = _merge(key, base, value)
    return out


MERGED_TABLES = ("measure", "where", "tolerance")  # requires, numerator, denominator: replaced whole


def _merge(key: str, base: Any, value: Any) -> Any:
    if key in MERGED_TABLES and isinstance(base, dict) and isinstance(value, dict):
        return {**base, **{k: _merge(k, base.get(k), v) for k, v in value.items()}}
    return value


def load_claims(paths: str | Path | list[str | Path] | None = None) -> list[Claim]:
    """Validated claims of the given TOML files or directories (default: the shipped natbench/claims/data)."""
    if paths is None:
        paths = [DATA_DIR]
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.toml"))
        else:
            files.append(p)
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for f in files:
        for claim in load_file(f):
            if claim.id in seen:
                raise ClaimError(f"{f}: claim {claim.id}: duplicate id (also in {seen[claim.id]})")
            seen[claim.id] = str(f)
            claims.append(claim)
    return claims
