"""The run's day, the validation of run parameters, and the template macros."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from lakehouse.macros import MAX_INGESTION_ID, ingestion_id
from lakehouse.params import GoldParameters, ParameterError, resolve_event_date

MIDNIGHT = datetime(2019, 10, 1, tzinfo=UTC)


def context(run_type: str = "manual", params: dict | None = None, **values) -> dict:
    return {"params": params or {}, "dag_run": SimpleNamespace(run_type=run_type), **values}


def test_day_from_param_wins():
    ctx = context(params={"event_date": "2019-10-05"}, logical_date=MIDNIGHT)
    assert resolve_event_date(ctx) == date(2019, 10, 5)


def test_day_scheduled_from_interval_start():
    ctx = context("scheduled", data_interval_start=MIDNIGHT, logical_date=MIDNIGHT)
    assert resolve_event_date(ctx) == date(2019, 10, 1)


def test_day_manual_from_logical_date():
    # Airflow gives a manual run the interval ending at its logical date: [Sep 30, Oct 1).
    ctx = context("manual", data_interval_start=datetime(2019, 9, 30, tzinfo=UTC), logical_date=MIDNIGHT)
    assert resolve_event_date(ctx) == date(2019, 10, 1)


def test_day_missing_without_logical_date():
    with pytest.raises(ParameterError, match="set the event_date parameter"):
        resolve_event_date(context("manual", logical_date=None))


@pytest.mark.parametrize("value", ["2019-13-01", "2019/10/01", "yesterday", "2019-10-01'; DROP TABLE x; --"])
def test_day_param_rejects_bad_value(value):
    with pytest.raises(ParameterError, match="invalid event_date"):
        resolve_event_date(context(params={"event_date": value}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"abandonment_window_hours": 0}, "abandonment_window_hours 0"),
        ({"abandonment_window_hours": -3}, "abandonment_window_hours -3"),
        ({"abandonment_window_hours": 169}, "abandonment_window_hours 169"),
        ({"abandonment_window_hours": "24 HOUR) --"}, "expected a whole number"),
        ({"brand_min_views": 0}, "brand_min_views 0"),
        ({"brand_conversion_ratio": 0}, "brand_conversion_ratio"),
        ({"brand_conversion_ratio": 1.5}, "brand_conversion_ratio"),
        ({"brand_conversion_ratio": "nan"}, "brand_conversion_ratio"),
    ],
)
def test_gold_parameters_reject(params, message):
    with pytest.raises(ParameterError, match=message):
        GoldParameters.from_context(context(params=params, logical_date=MIDNIGHT))


def test_gold_parameters_output_dates():
    parameters = GoldParameters(event_date=date(2019, 10, 10), window_hours=30)
    assert parameters.window_days == 2
    assert parameters.output_dates("cart_abandonment") == (date(2019, 10, 8), date(2019, 10, 10))
    assert parameters.output_dates("brand_marketing") == (date(2019, 10, 10), date(2019, 10, 10))
    values = parameters.template_values()
    assert values["first_cart_date"] == "2019-10-08"
    assert values["last_purchase_date"] == "2019-10-12"


def test_ingestion_id_allowed_characters():
    value = ingestion_id("daily_unique_visitors", "scheduled__2019-10-01T00:00:00+00:00", 2)
    assert value == "daily_unique_visitors-scheduled__2019-10-01T00-00-00-00-00-try2"


def test_ingestion_id_long_run_id_fits():
    value = ingestion_id("top_categories_weekday" * 4, "manual__" + "x" * 300 + ":+.", 12)
    assert len(value) <= MAX_INGESTION_ID
    assert value.endswith("-try12")
    assert all(c.isalnum() or c in "-_" for c in value)


def test_ingestion_id_unique_per_try():
    assert ingestion_id("d", "manual__1", 1) != ingestion_id("d", "manual__1", 2)


def test_whole_float_window_accepted():
    parameters = GoldParameters.from_context(
        context(params={"abandonment_window_hours": 24.0}, logical_date=MIDNIGHT)
    )
    assert parameters.window_hours == 24
