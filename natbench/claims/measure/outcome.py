"""What a measure method returns: measurements with noise bands, or why none (skip: cannot run here; error:
natbench got something wrong)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measurement:
    label: str
    value: Any
    low: Any
    high: Any
    provenance: str
    rows: list[str] = field(default_factory=list)  # case ids the value came from
    band_source: str = ""  # how the band was made (process CI, pair CI, IQR, fit CI, exact)


@dataclass
class Outcome:
    """skip / error (a reason in words, with a short `category` for grouping) or measurements.

    `expand` gives each measurement its own verdict (scaling fits per backend)."""

    skip: str | None = None
    error: str | None = None
    category: str = ""
    measurements: list[Measurement] = field(default_factory=list)
    expand: bool = False
    notes: list[str] = field(default_factory=list)


def skip(category: str, reason: str) -> Outcome:
    return Outcome(skip=reason, category=category)


def error(reason: str) -> Outcome:
    return Outcome(error=reason, category="natbench error")
