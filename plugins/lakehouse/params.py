"""Run parameters of the batch DAG: the trigger form's fields, their validation, and the day.

The form validates each ``Param`` against its JSON schema. ``GoldParameters.from_context``
validates them again in the task, because a run's conf can also arrive from the CLI or the
REST API, and these values end up inside SQL text and lake paths.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
    # JSON Schema counts 24.0 as an integer, so the trigger form and the API accept it too.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
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


# The streaming replay DAG. A time is UTC: "YYYY-MM-DD", or a date and time with an optional
# "Z", " UTC" or "+00:00". Other offsets are rejected rather than converted, so that a range
# typed in the form means the same instants as the event_time column.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?( ?UTC|Z|[+]00:?00)?$"
MAX_REPLAY_DAYS = 31
MAX_SPEEDUP = 3600
MAX_REPLAY_EVENTS = 100_000_000
# Empty means the LAKEHOUSE_STREAM_NAME setting. "." and "..", which Kinesis would accept, are
# rejected because the name is also a folder of the replay's checkpoint.
STREAM_NAME_SCHEMA = r"^((?!\.{1,2}$)[A-Za-z0-9_.-]{1,128})?$"
# A replay must end within the task's execution timeout of 26 hours; a retry resumes after it.
MAX_REPLAY_WALL_HOURS = 24

REPLAY_PARAMS = {
    "start": Param(
        "2019-10-01",
        type="string",
        pattern=TIMESTAMP_PATTERN,
        minLength=10,
        maxLength=32,
        title="Start of the event-time range (UTC)",
        description=(
            "First event time to replay, inclusive: YYYY-MM-DD for midnight, or YYYY-MM-DD HH:MM[:SS] in UTC."
        ),
    ),
    "end": Param(
        "2019-10-01",
        type="string",
        pattern=TIMESTAMP_PATTERN,
        minLength=10,
        maxLength=32,
        title="End of the event-time range (UTC)",
        description=(
            "Event time where the replay stops, exclusive. A date alone means the end of that "
            f"day, so start = end = one date replays that whole day. At most {MAX_REPLAY_DAYS} "
            "days after the start."
        ),
    ),
    "speedup": Param(
        60,
        type="number",
        minimum=0,
        maximum=MAX_SPEEDUP,
        title="Speed-up factor",
        description=(
            "Event-time seconds replayed per wall-clock second: 1 is real time, 60 an hour a "
            "minute, 0 as fast as the stream accepts."
        ),
    ),
    "max_events": Param(
        1_000_000,
        type="integer",
        minimum=1,
        maximum=MAX_REPLAY_EVENTS,
        title="Maximum number of events",
        description="The replay stops after this many events, the earliest of the range first.",
    ),
    "stream_name": Param(
        None,
        type=["null", "string"],
        pattern=STREAM_NAME_SCHEMA,
        title="Kinesis stream",
        description=(
            "Stream to replay into: 1 to 128 letters, digits, '_', '.' or '-', not '.' or '..'. "
            "Leave empty for the LAKEHOUSE_STREAM_NAME setting."
        ),
    ),
}


def parse_utc_timestamp(value: Any, name: str, *, is_end: bool = False) -> datetime:
    """Parse a replay bound as an aware UTC datetime.

    A date alone is midnight at the start, and the next midnight at the end, because the end is
    exclusive and ``end = 2019-10-01`` reads as "through that day".
    """
    text = str(value).strip() if value is not None else ""
    if not re.match(TIMESTAMP_PATTERN, text):
        raise ParameterError(f"invalid {name} {text!r}: expected YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS] in UTC")
    if len(text) == 10:
        day = _parse_date(text, name)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if is_end and day == date.max:
            raise ParameterError(f"invalid {name} {text!r}: expected a date before {date.max.isoformat()}")
        return moment + timedelta(days=1) if is_end else moment
    cleaned = text.removesuffix("UTC").removesuffix("Z").strip().replace(" ", "T")
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError as error:
        raise ParameterError(f"invalid {name} {text!r}: {error}") from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class ReplayParameters:
    """Validated values of one replay run: the half-open range [start, end) and its pacing."""

    start: datetime
    end: datetime
    speedup: float = 60.0
    max_events: int = 1_000_000
    stream_name: str | None = None
    # The values as typed, for messages: a date alone as end means the next midnight.
    typed_range: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.end <= self.start:
            typed = (
                f" (typed: start {self.typed_range[0]!r}, end {self.typed_range[1]!r})"
                if self.typed_range
                else ""
            )
            raise ParameterError(
                f"invalid range: end {self.end.isoformat()} is not after start {self.start.isoformat()}{typed}; "
                "an end given as a date means the end of that day"
            )
        if self.end - self.start > timedelta(days=MAX_REPLAY_DAYS):
            raise ParameterError(
                f"invalid range {self.start.isoformat()} to {self.end.isoformat()}: "
                f"expected at most {MAX_REPLAY_DAYS} days"
            )
        speedup = self.speedup
        if (
            isinstance(speedup, bool)
            or not isinstance(speedup, (int, float))
            or math.isnan(speedup)
            or not 0 <= speedup <= MAX_SPEEDUP
        ):
            raise ParameterError(f"invalid speedup {speedup!r}: expected a number from 0 to {MAX_SPEEDUP}")
        span_hours = (self.end - self.start).total_seconds() / 3600
        if speedup > 0 and span_hours / speedup > MAX_REPLAY_WALL_HOURS:
            raise ParameterError(
                f"invalid speedup {speedup!r}: {span_hours:.1f} hours of event time would take "
                f"{span_hours / speedup:.1f} hours, expected at most {MAX_REPLAY_WALL_HOURS}; "
                f"use a speed-up of at least {span_hours / MAX_REPLAY_WALL_HOURS:.4g}, or 0"
            )
        _int_in_range(self.max_events, "max_events", 1, MAX_REPLAY_EVENTS)
        if self.stream_name is not None and not re.match(STREAM_NAME_SCHEMA, self.stream_name):
            raise ParameterError(
                f"invalid stream_name {self.stream_name!r}: expected 1 to 128 letters, digits, "
                "'_', '.' or '-'"
            )

    @classmethod
    def from_context(cls, context: Any) -> ReplayParameters:
        params = context.get("params") or {}
        speedup = params.get("speedup", 60)
        if isinstance(speedup, bool):
            raise ParameterError(f"invalid speedup {speedup!r}: expected a number")
        try:
            speedup = float(speedup)
        except (TypeError, ValueError) as error:
            raise ParameterError(f"invalid speedup {speedup!r}: expected a number") from error
        stream = params.get("stream_name")
        return cls(
            start=parse_utc_timestamp(params.get("start"), "start"),
            end=parse_utc_timestamp(params.get("end"), "end", is_end=True),
            speedup=speedup,
            max_events=_int_in_range(params.get("max_events", 1_000_000), "max_events", 1, MAX_REPLAY_EVENTS),
            stream_name=str(stream).strip() if stream not in (None, "") else None,
            typed_range=(str(params.get("start")), str(params.get("end"))),
        )
