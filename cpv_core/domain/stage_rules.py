"""Stage rules: which stages exist, in which order, and what a version must
satisfy to enter one. Pure parsing and checking, no I/O.

The rules live in the model's repository (``.cpv/stages.json``), so every
member and CI enforce the same ones; like anything read from the repository
they are data: parsed by a fixed grammar, never evaluated::

    {"order": ["dev", "staging", "prod"],
     "require_previous": true,
     "gates": {"prod": ["wer < 0.05", "loss <= 0.3"]}}

A gate compares a metric (dotted for nested keys: ``acc.top1``) with a
number using ``< <= > >= == !=``.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cpv_core.domain.metrics import flatten_metrics, format_value, metric_number
from cpv_core.errors import ValidationError
from cpv_core.trust import json_object, visible

RULES_FILE = ".cpv/stages.json"
MAX_RULES_BYTES = 64 * 1024
MAX_STAGES = 32
MAX_GATES = 32
#: names a stage cannot have: they mean something else where a version is accepted
RESERVED_STAGE_NAMES = frozenset({"latest", "best", "head"})
_STAGE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_GATE_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.-]{0,127})\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def is_stage_name(value: object) -> bool:
    """Whether ``value`` can name a stage (see :func:`check_stage_name`)."""
    return isinstance(value, str) and bool(_STAGE_RE.fullmatch(value)) and value not in RESERVED_STAGE_NAMES


def check_stage_name(value: object, where: str = "stage") -> str:
    """``value`` as a stage name (lower-case letters, digits, ``-`` and ``_``,
    starting with a letter, at most 32 characters, not a selector word)."""
    if not isinstance(value, str) or not is_stage_name(value):
        raise ValidationError(
            f"{where} {visible(repr(value))} is not a stage name",
            fix="use lower-case letters, digits, '-' or '_', starting with a letter (e.g. dev, staging, prod); "
            f"not {', '.join(sorted(RESERVED_STAGE_NAMES))}",
        )
    return value


@dataclass(frozen=True)
class Gate:
    """``metric op number``: a condition a version's metrics must meet."""

    metric: str
    op: str
    number: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {format_value(self.number)}"

    def failure(self, metrics: Mapping[str, Any]) -> str | None:
        """Why ``metrics`` fail this gate (``wer=0.061 is not < 0.05``), or None when they pass."""
        value = metric_number(metrics, self.metric)
        if value is None:
            raw = flatten_metrics(metrics).get(self.metric)
            shown = "missing" if raw is None else f"{format_value(raw)} (not a number)"
            return f"{self.metric} is {shown}, needed {self}"
        if not _OPS[self.op](value, self.number):
            return f"{self.metric}={format_value(value)} is not {self.op} {format_value(self.number)}"
        return None


def parse_gate(text: object, where: str) -> Gate:
    """A gate from its text, by a fixed grammar (never evaluated)."""
    match = _GATE_RE.fullmatch(text) if isinstance(text, str) else None
    number = float(match.group("number")) if match else math.nan
    if match is None or not math.isfinite(number):
        raise ValidationError(
            f"{where}: {visible(repr(text))} is not a gate",
            fix="write METRIC OP NUMBER, e.g. 'wer < 0.05' or 'acc.top1 >= 0.9' (OP: < <= > >= == !=)",
        )
    return Gate(match.group("metric"), match.group("op"), number)


@dataclass(frozen=True)
class StageRules:
    """The rules of one kind's stages (no rules: any stage name, no conditions)."""

    order: tuple[str, ...] = ()
    require_previous: bool = False
    gates: Mapping[str, tuple[Gate, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``stage-rules show --json`` prints and the file holds)."""
        return {
            "order": list(self.order),
            "require_previous": self.require_previous,
            "gates": {stage: [str(g) for g in gates] for stage, gates in self.gates.items()},
        }

    def check_stage(self, stage: str) -> None:
        """Refuse a stage the rules do not list (when they list any)."""
        if self.order and stage not in self.order:
            raise ValidationError(
                f"stage {visible(stage)} is not one of the model's stages ({', '.join(self.order)})",
                fix=f"use one of them, or add it with `cpv model stage-rules set FILE` ({RULES_FILE})",
            )

    def violations(self, stage: str, metrics: Mapping[str, Any], held: Sequence[str]) -> list[str]:
        """Every rule a promotion to ``stage`` breaks, as text: the gates the
        version's ``metrics`` fail, and (with ``require_previous``) the previous
        stage in the order when the version never held it (``held``)."""
        problems = [why for gate in self.gates.get(stage, ()) if (why := gate.failure(metrics))]
        if self.require_previous and stage in self.order:
            index = self.order.index(stage)
            if index > 0 and self.order[index - 1] not in held:
                problems.append(f"it never held the previous stage {self.order[index - 1]}")
        return problems


def parse_rules(raw: bytes | str, where: str = RULES_FILE) -> StageRules:
    """Parse and check stage rules; :class:`ValidationError` naming the key otherwise."""
    fix = "see docs/concepts.md (Stages) for the format; example: " + json.dumps(
        {"order": ["dev", "staging", "prod"], "require_previous": True, "gates": {"prod": ["wer < 0.05"]}}
    )
    if len(raw) > MAX_RULES_BYTES:
        raise ValidationError(f"{where} is larger than {MAX_RULES_BYTES} bytes", fix=fix)
    data = json_object(raw, where, fix)
    unknown = sorted(set(data) - {"order", "require_previous", "gates"})
    if unknown:
        raise ValidationError(f"{where}: unknown key {visible(repr(unknown[0]))}", fix=fix)
    order = data.get("order", [])
    if not isinstance(order, list) or len(order) > MAX_STAGES:
        raise ValidationError(f"{where} order is not a list of at most {MAX_STAGES} stage names", fix=fix)
    stages = tuple(check_stage_name(s, f"{where} order entry") for s in order)
    if len(set(stages)) != len(stages):
        raise ValidationError(f"{where} order names a stage twice", fix=fix)
    require_previous = data.get("require_previous", False)
    if not isinstance(require_previous, bool):
        raise ValidationError(f"{where} require_previous is not true or false", fix=fix)
    if require_previous and not stages:
        raise ValidationError(f"{where} require_previous needs an order of stages", fix=fix)
    raw_gates = data.get("gates", {})
    if not isinstance(raw_gates, dict):
        raise ValidationError(f"{where} gates is not an object of stage -> list of gates", fix=fix)
    gates: dict[str, tuple[Gate, ...]] = {}
    for stage, texts in raw_gates.items():
        check_stage_name(stage, f"{where} gates key")
        if stages and stage not in stages:
            raise ValidationError(f"{where} gates names stage {visible(stage)}, which is not in the order", fix=fix)
        if not isinstance(texts, list) or len(texts) > MAX_GATES:
            raise ValidationError(f"{where} gates.{stage} is not a list of at most {MAX_GATES} gates", fix=fix)
        gates[stage] = tuple(parse_gate(t, f"{where} gates.{stage}") for t in texts)
    return StageRules(order=stages, require_previous=require_previous, gates=gates)
