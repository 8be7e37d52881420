"""A per-layer (or per-block, per-stage) table of a network: shapes, parameters, MACs, activation memory.

The figures are the graph's own static ones; the tests check them against the
compiled module (parameters), a real forward pass (shapes) and PyTorch's
FlopCounterMode (MACs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from archdsl.ops import lookup
from archdsl.render.view import LEVELS, Unit, fold

BYTES_PER_VALUE = 4  # float32 activations


@dataclass(frozen=True)
class Row:
    """One line of the summary."""

    path: str
    op: str
    shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int  # per input sample
    kind: str = "row"  # "row", "subtotal" or "total"


def summarize(g: nx.DiGraph, level: str = "layer") -> list[Row]:
    """Rows for ``g`` folded to ``level`` (see :func:`archdsl.render.fold`), with per-stage subtotals and a total."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    view = fold(g, level)
    rows: list[Row] = []
    current_stage: str | None = None
    stage_rows: list[Row] = []
    for unit in view.units:
        stage = _stage_of(g, unit)
        if stage != current_stage and len(stage_rows) > 1 and current_stage is not None:
            rows.append(_subtotal(current_stage, stage_rows))
        if stage != current_stage:
            stage_rows = []
            current_stage = stage
        row = _row(g, unit)
        rows.append(row)
        stage_rows.append(row)
    if current_stage is not None and stage_rows and len(stage_rows) > 1:
        rows.append(_subtotal(current_stage, stage_rows))
    plain = [r for r in rows if r.kind == "row"]
    rows.append(
        Row(
            "total",
            "",
            (),
            sum(r.params for r in plain),
            sum(r.macs for r in plain),
            sum(r.activation_bytes for r in plain),
            "total",
        )
    )
    return rows


def _stage_of(g: nx.DiGraph, unit: Unit) -> str | None:
    groups = g.nodes[unit.nodes[0]]["groups"]
    stage = next((grp.path for grp in groups if grp.kind == "stage"), None)
    return stage


def _row(g: nx.DiGraph, unit: Unit) -> Row:
    data = [g.nodes[n] for n in unit.nodes]
    last = data[-1]
    if unit.kind == "layer":
        op = last["op"]
    elif unit.kind == "run":
        op = f"{unit.group.name} x {unit.count}"
    else:
        op = unit.group.name
    path = unit.id
    if unit.kind == "run":
        path = f"{unit.first_repeat}–{unit.last_repeat.rsplit('.', 1)[1]}"
    return Row(
        path=path,
        op=op,
        shape=tuple(last["shape"]),
        params=sum(d["params"] for d in data),
        macs=sum(d["macs"] for d in data),
        # inputs are the caller's and params are weights: neither is an activation the network makes
        activation_bytes=sum(
            math.prod(d["shape"]) * BYTES_PER_VALUE for d in data if d["op"] != "input" and not lookup(d["op"]).learned
        ),
    )


def _subtotal(stage: str, rows: list[Row]) -> Row:
    return Row(
        f"{stage} (subtotal)",
        "",
        rows[-1].shape,
        sum(r.params for r in rows),
        sum(r.macs for r in rows),
        sum(r.activation_bytes for r in rows),
        "subtotal",
    )


def human_bytes(value: int) -> str:
    """1536 -> '1.5 KiB'."""
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value} B"
