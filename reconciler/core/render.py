"""Terraform-like text for a Plan: + create, ~ change, - disable, ! destroy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..config.sizes import format_size
from .actions import Action, Fields, Op, Plan

SYMBOLS = {Op.CREATE: "+", Op.UPDATE: "~", Op.DISABLE: "-", Op.DESTROY: "!"}
_SIZE_KEYS = {"size", "used"}


def _value(key: str | None, value: Any) -> str:
    if value is None:
        return "-"
    if key in _SIZE_KEYS and isinstance(value, int):
        return format_size(value)
    if isinstance(value, tuple):
        return ",".join(_value(key, v) for v in value) or "(none)"
    if isinstance(value, str) and (" " in value or not value):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _fields(value: Any) -> dict[str, str]:
    if isinstance(value, Fields):
        return {key: _value(key, item) for key, item in value.given().items()}
    if isinstance(value, Mapping):
        return {key: _value(key, item) for key, item in value.items()}
    return {"": str(value)} if value is not None else {}


def describe(action: Action) -> str:
    """``name: "Jane" -> "Jane Doe"`` for changes, ``size=1 GiB`` for creations."""
    before, after = _fields(action.before), _fields(action.after)
    if action.op is Op.UPDATE:
        parts = [f"{k + ': ' if k else ''}{before.get(k, '-')} -> {v}" for k, v in after.items()]
        parts += [f"{k} {v}" for k, v in before.items() if k not in after]
    else:
        shown = after if action.op is Op.CREATE else before
        parts = [f"{k}={v}" if k else v for k, v in shown.items()]
    return ", ".join(parts)


# ANSI colours for a terminal: + green, ~ yellow, - and ! red (the caller decides: cli.progress.colour_on)
COLOURS = {Op.CREATE: "\x1b[32m", Op.UPDATE: "\x1b[33m", Op.DISABLE: "\x1b[31m", Op.DESTROY: "\x1b[1;31m"}
RESET = "\x1b[0m"


def _line(action: Action, colour: bool = False) -> str:
    symbol = f"{COLOURS[action.op]}{SYMBOLS[action.op]}{RESET}" if colour else SYMBOLS[action.op]
    text = f"  {symbol} {action.kind:<10} {action.target:<16} {describe(action)}"
    text = f"{text}  ({action.reason})" if action.reason else text
    return f"{text}\n      waits: {action.waits}" if action.waits else text


def render_text(plan: Plan, colour: bool = False) -> str:
    lines = []
    changes = [a for a in plan.actions if not a.drift]
    drift = [a for a in plan.actions if a.drift]
    if plan.refused:
        lines.append("Refused: nothing will be applied.")
        lines += [f"  ! {n.message}" for n in plan.refused]
        lines.append("")
    if plan.blocked:
        lines.append("Blocked (these people are skipped; everyone else proceeds):")
        lines += [f"  ? {n.target + ': ' if n.target else ''}{n.message}" for n in plan.blocked]
        lines.append("")
    if changes:
        lines.append(f"Changes for classroom {plan.classroom}:")
        lines += [_line(a, colour) for a in changes]
        lines.append("")
    if drift:
        lines.append("Drift (changed outside reconcile; will be repaired):")
        lines += [_line(a, colour) for a in drift]
        lines.append("")
    if not plan.actions:
        lines.append(f"No changes. Classroom {plan.classroom} matches classroom.yaml.")
    if plan.upcoming:
        lines.append("Next (nothing to do before then):")
        lines += [f"  > {n.message}" for n in plan.upcoming]
    s = plan.summary
    lines.append(
        f"Plan: {s['create']} to create, {s['change']} to change, {s['disable']} to disable, {s['destroy']} to destroy."
    )
    if plan.waiting:
        lines.append(
            f"{len(plan.waiting)} of them wait until the volume is free (shown, not applied; every pass tries again)."
        )
    return "\n".join(lines)


def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_json(), indent=2)
