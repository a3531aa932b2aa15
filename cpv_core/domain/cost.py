"""Storage cost (``cpv du --cost``): what is actually stored, priced per month,
per version, per model and per team.

An object used by several versions is stored once, so it is counted once: each
version is charged its share (the object's size divided by the number of
versions using it), and a model is charged everything in its store, including
objects no version uses any more (``cpv gc`` removes those).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cpv_core.errors import ValidationError

#: USD per GB-month of S3 Standard (us-east-1, first 50 TB); AWS bills a GB as 2**30 bytes
DEFAULT_PRICE_PER_GB_MONTH = 0.023
GB = 1024**3


def check_price(price: float) -> float:
    """``price`` if it is a usable price per GB-month, else a ValidationError."""
    if not (price >= 0 and price < 1e6):  # also refuses NaN
        raise ValidationError(
            f"price {price!r} per GB-month is not usable", fix="pass a non-negative number, e.g. --price-per-gb-month 0.023"
        )
    return price


def monthly(size: float, price: float) -> float:
    """The monthly cost of ``size`` bytes at ``price`` per GB-month (rounded to 1/10000)."""
    return round(size / GB * price, 4)


def storage_cost(usage_by_model: Mapping[str, Mapping[str, Any]], price: float) -> dict[str, Any]:
    """Cost per version, model and team from :func:`cpv_core.ops.retention.disk_usage`
    results keyed by ``"team/model"``."""
    check_price(price)
    versions: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    teams: dict[str, dict[str, Any]] = {}
    for name, usage in usage_by_model.items():
        team, _, model = name.partition("/")
        for row in usage["versions"]:
            versions.append({"team": team, "model": model, **row, "monthly_cost": monthly(row["stored"], price)})
        total = int(usage["total_bytes"])
        whole = int(usage.get("whole_file_bytes", 0))
        models[name] = {
            "bytes": total,
            "unreferenced_bytes": int(usage["unreferenced_bytes"]),
            "monthly_cost": monthly(total, price),
            "whole_file_bytes": whole,
            "whole_file_monthly_cost": monthly(whole, price),
        }
        team_row = teams.setdefault(team, {"bytes": 0, "models": 0})
        team_row["bytes"] += total
        team_row["models"] += 1
    for team_row in teams.values():
        team_row["monthly_cost"] = monthly(team_row["bytes"], price)
    return {"price_per_gb_month": price, "currency": "USD", "versions": versions, "models": models, "teams": teams}
