"""Groups: cases that differ along one axis (kernel sizes at one map), timed interleaved in the same processes,
so that a scaling fit across them sees the machine's drift cancel as a paired ratio does.

Timed as separate cases, each size's processes meet other minutes of a shared machine: in one busy cpu-quick
sweep fused NA 56x56 at k = 5 ran 0.89-1.57 ms over its five processes and k = 13 4.13-5.71 ms, and the
fitted exponent's interval spanned 1.20..1.93. In a group each process times every member in rounds
(natbench.measure.interleave), a slow spell moves all of them, and the fit's bootstrap resamples whole
processes (natbench.measure.stats.fit_power_law_paired).

The row (kind="group") keeps each member's per-process medians (`member_process_ms`, member by member,
aligned by process); the members also run as ordinary cases (their memory, their own latency rows).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from natbench.measure.interleave import BLOCK_S, failed_row, machine_columns
from natbench.measure.spec import FIELD_NAMES, CaseSpec
from natbench.results import CASE_PARAMS


@dataclass(frozen=True)
class GroupSpec:
    """Latency of `members`, which differ only in `axis`, measured interleaved in the same processes."""

    members: tuple[CaseSpec, ...]
    axis: str

    kind = "group"

    def __post_init__(self):
        if self.axis not in FIELD_NAMES:
            raise ValueError(
                f"a group's axis must be a case field ({', '.join(FIELD_NAMES)}), got {self.axis!r}"
            )
        if len(self.members) < 2:
            raise ValueError("a group needs at least two members")
        rest = [{k: v for k, v in m.to_dict().items() if k != self.axis} for m in self.members]
        if any(r != rest[0] for r in rest[1:]):
            raise ValueError(f"a group's members may differ only in its axis ({self.axis})")
        values = self.values
        if len(set(values)) != len(values):
            raise ValueError(f"a group's members need distinct {self.axis} values, got {values}")

    def __getattr__(self, name: str) -> Any:
        # the fields the members share read as a case's do (the axis reads None), so filters over a preset's
        # specs work on groups too
        if name in CASE_PARAMS and name != "target":
            return None if name == self.axis else getattr(self.members[0], name)
        raise AttributeError(name)

    @property
    def values(self) -> list[Any]:
        return [m.to_dict()[self.axis] for m in self.members]

    @property
    def case_id(self) -> str:
        ids = "|".join(m.case_id for m in self.members)
        digest = hashlib.sha1(ids.encode()).hexdigest()[:10]
        first = self.members[0]
        return (
            f"group-{first.target.replace(':', '.').replace('_', '-')}-{self.axis.replace('_', '-')}-{digest}"
        )

    @property
    def device(self) -> str:
        return self.members[0].device

    @property
    def target(self) -> str:
        return self.members[0].target

    @property
    def tokens(self) -> int | None:
        return None

    def resolved(self, cuda_available: bool) -> GroupSpec:
        return GroupSpec(tuple(m.resolved(cuda_available) for m in self.members), self.axis)

    def to_dict(self) -> dict[str, Any]:
        first = self.members[0].to_dict()
        shared = {k: (None if k == self.axis else first[k]) for k in CASE_PARAMS}
        return {**shared, "kind": "group", "axis": self.axis, "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupSpec:
        return cls(tuple(CaseSpec.from_dict(m) for m in data["members"]), data["axis"])


def per_process(row: dict[str, Any], members: list[int]) -> list[list[float]]:
    """A group row's `member_process_ms` turned around: each process's medians of the members at `members`."""
    values = row["member_process_ms"]
    return [[float(values[j][p]) for j in members] for p in range(len(values[0]))]


def group_row(group: GroupSpec, processes: list[dict[str, Any]]) -> dict[str, Any]:
    """The kind="group" row from its processes' results (measure_interleaved's dicts, in order); the first that
    failed makes the row fail and says which."""
    d = group.to_dict()
    row = {k: d[k] for k in CASE_PARAMS}
    row.update(
        case_id=group.case_id,
        kind="group",
        target=group.target,
        group_of=[m.case_id for m in group.members],
        group_axis=group.axis,
        group_values=group.values,
        metric="latency",
    )
    if failed_row(row, processes) is not None:
        return row
    per_member = [[float(np.median(r["member_ms"][j])) for r in processes] for j in range(len(group.members))]
    row.update(
        status="ok",
        repeats=len(processes),
        member_process_ms=per_member,
        member_ms=[float(np.median(v)) for v in per_member],
        **machine_columns(processes),
        timer=f"interleaved rounds of {BLOCK_S * 1e3:g} ms blocks per member, order reversed every other round",
    )
    return row
