"""Run parameters of the batch DAG: the trigger form's fields, their validation, and the day.

The form validates each ``Param`` against its JSON schema. ``GoldParameters.from_context``
validates them again in the task, because a run's conf can also arrive from the CLI or the
REST API, and these values end up inside SQL text and lake paths.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Any

from airflow.sdk import Param

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
MAX_WINDOW_HOURS = 24 * 7

BATCH_PARAMS = {
    "event_date": Param(
        None,
        type=["null", "string"],
        format="date",
        pattern=DATE_PATTERN,
        title="Event date (UTC)",
        description=(
            "Day of events to process, YYYY-MM-DD. Leave empty to process the run's data "
            "interval; a manual run without a logical date needs it."
        ),
    ),
    "abandonment_window_hours": Param(
        24,
        type="integer",
        minimum=1,
        maximum=MAX_WINDOW_HOURS,
        title="Cart abandonment window (hours)",
        description="A cart is abandoned when the same user buys the same product no later "
        "than this many hours after the cart event.",
    ),
    "brand_min_views": Param(
        100,
        type="integer",
        minimum=1,
        maximum=10_000_000,
        title="Brand marketing: minimum views",
        description="Brands with fewer views in the day are not judged.",
    ),
    "brand_conversion_ratio": Param(
        0.5,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        title="Brand marketing: conversion ratio",
        description="A brand needs marketing when its view-to-purchase conversion is below "
        "this share of the day's overall conversion.",
    ),
}


class ParameterError(ValueError):
    """A run parameter is missing or outside its allowed range."""


def _parse_date(value: Any, name: str) -> date:
    text = str(value).strip()
    if not re.match(DATE_PATTERN, text):
        raise ParameterError(f"invalid {name} {text!r}: expected a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise ParameterError(f"invalid {name} {text!r}: {error}") from error


def resolve_event_date(context: Any) -> date:
    """Return the UTC day a run processes.

    The ``event_date`` parameter wins when set. A scheduled or backfill run processes the
    start of its data interval. A manual run with a logical date processes that date: Airflow
    gives a manual run the interval that ends at its logical date, so
    ``airflow dags test ecommerce_batch_lakehouse 2019-10-01`` and the scheduled run of the
    interval starting 2019-10-01 both process 2019-10-01.
    """
    params = context.get("params") or {}
    if params.get("event_date"):
        return _parse_date(params["event_date"], "event_date")
    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "") or "").lower()
    interval_start = context.get("data_interval_start")
    if interval_start is not None and run_type.endswith(("scheduled", "backfill")):
        return interval_start.astimezone(UTC).date()
    logical_date = context.get("logical_date")
    if logical_date is not None:
        return logical_date.astimezone(UTC).date()
    raise ParameterError(
        "missing event_date: this run has no logical date, so set the event_date parameter "
        "(YYYY-MM-DD) in the trigger form"
    )


def _int_in_range(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParameterError(f"invalid {name} {value!r}: expected a whole number")
    try:
        number = int(str(value).strip())
    except ValueError as error:
        raise ParameterError(f"invalid {name} {value!r}: expected a whole number") from error
    if not low <= number <= high:
        raise ParameterError(f"invalid {name} {number}: expected {low} to {high}")
    return number


@dataclass(frozen=True)
class GoldParameters:
    """Validated values that the gold SQL files are rendered with."""

    event_date: date
    window_hours: int = 24
    brand_min_views: int = 100
    brand_conversion_ratio: float = 0.5

    def __post_init__(self) -> None:
        _int_in_range(self.window_hours, "abandonment_window_hours", 1, MAX_WINDOW_HOURS)
        _int_in_range(self.brand_min_views, "brand_min_views", 1, 10_000_000)
        ratio = self.brand_conversion_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ParameterError(
                f"invalid brand_conversion_ratio {ratio!r}: expected a number above 0, at most 1"
            )

    @classmethod
    def from_context(cls, context: Any) -> GoldParameters:
        params = context.get("params") or {}
        ratio = params.get("brand_conversion_ratio", 0.5)
        try:
            ratio = float(ratio)
        except (TypeError, ValueError) as error:
            raise ParameterError(f"invalid brand_conversion_ratio {ratio!r}: expected a number") from error
        if math.isnan(ratio):
            raise ParameterError("invalid brand_conversion_ratio nan: expected a number")
        return cls(
            event_date=resolve_event_date(context),
            window_hours=_int_in_range(
                params.get("abandonment_window_hours", 24),
                "abandonment_window_hours",
                1,
                MAX_WINDOW_HOURS,
            ),
            brand_min_views=_int_in_range(
                params.get("brand_min_views", 100), "brand_min_views", 1, 10_000_000
            ),
            brand_conversion_ratio=ratio,
        )

    @property
    def window_days(self) -> int:
        """Whole days a cart's window can reach past its own day."""
        return math.ceil(self.window_hours / 24)

    def output_dates(self, table: str) -> tuple[date, date]:
        """Return the first and last event_date partition a table's run rewrites.

        Cart abandonment rewrites the earlier days whose windows reach into this day, so a
        day first marked not final is corrected by the next day's run.
        """
        if table == "cart_abandonment":
            return self.event_date - timedelta(days=self.window_days), self.event_date
        return self.event_date, self.event_date

    def template_values(self) -> dict[str, Any]:
        first, _last = self.output_dates("cart_abandonment")
        return {
            "event_date": self.event_date.isoformat(),
            "first_cart_date": first.isoformat(),
            "last_purchase_date": (self.event_date + timedelta(days=self.window_days)).isoformat(),
            "window_hours": self.window_hours,
            "brand_min_views": self.brand_min_views,
            "brand_conversion_ratio": repr(float(self.brand_conversion_ratio)),
        }
