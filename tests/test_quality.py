"""The data-quality rules, on profiles built by hand."""

from __future__ import annotations

from lakehouse.quality import REQUIRED_COLUMNS, SilverProfile, evaluate

COLUMNS = {
    "event_id": "VARCHAR",
    "event_time": "TIMESTAMP WITH TIME ZONE",
    "event_type": "VARCHAR",
    "product_id": "BIGINT",
    "category_id": "BIGINT",
    "category_code": "VARCHAR",
    "brand": "VARCHAR",
    "price": "DECIMAL(12,2)",
    "user_id": "BIGINT",
    "user_session": "VARCHAR",
    "event_hour": "INTEGER",
    "day_of_week": "INTEGER",
    "event_date": "DATE",
}


def profile(**changes) -> SilverProfile:
    values = dict(
        event_date="2019-10-01",
        rows_in=100,
        silver_rows=90,
        quarantined_rows=4,
        duplicates_dropped=6,
        job_rows_in=100,
        job_silver_rows=90,
        columns=dict(COLUMNS),
    )
    values.update(changes)
    return SilverProfile(**values)


def test_balanced_profile_passes():
    assert evaluate(profile()) == []


def test_unbalanced_counts_fail():
    (failure,) = evaluate(profile(rows_in=101, job_rows_in=101))
    assert "rows in (101) != silver (90) + quarantined (4) + duplicates dropped (6)" in failure


def test_landing_changed_during_run_fails():
    failures = evaluate(profile(job_rows_in=99))
    assert any("the Glue job read 99 rows but the landing files have 100" in f for f in failures)


def test_missing_column_fails():
    columns = dict(COLUMNS)
    del columns["price"]
    assert evaluate(profile(columns=columns)) == ["missing silver columns: price"]


def test_wrong_type_fails():
    (failure,) = evaluate(profile(columns={**COLUMNS, "category_id": "DOUBLE"}))
    assert "category_id is DOUBLE, expected bigint" in failure


def test_value_rules_fail_with_counts():
    failures = evaluate(profile(unknown_event_types=2, negative_prices=3, null_required_values=1))
    assert any(f.startswith("2 rows with event_type outside") for f in failures)
    assert "3 rows with price < 0" in failures
    assert any(f.startswith("1 rows with NULL in") for f in failures)


def test_empty_silver_fails():
    failures = evaluate(
        profile(rows_in=10, silver_rows=0, job_silver_rows=0, quarantined_rows=10, duplicates_dropped=0)
    )
    assert any("silver has no rows" in f for f in failures)


def test_required_columns_cover_contract():
    assert set(REQUIRED_COLUMNS) >= {
        "event_time",
        "event_type",
        "product_id",
        "price",
        "user_id",
        "event_date",
    }
