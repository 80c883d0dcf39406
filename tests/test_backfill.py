"""A generated week processed as a backfill and in another order gives the same gold tables.

Lake A runs 2019-10-01..07 in order, one ``dag.test()`` per day with that day's logical date,
as ``airflow backfill create --dag-id ecommerce_batch_lakehouse --from-date 2019-10-01
--to-date 2019-10-07`` does with ``max_active_runs=1``. Those runs are of type manual, not
backfill, and both kinds process the day of their logical date. Lake B gets the same landed files and
runs the days in reverse order, then the whole week again in order.

What "the same" must mean follows from cart abandonment. The run for day D rewrites the cart
days D-1 and D and reads purchases through D+1. Its ``data_through`` is the end of the days
landed contiguously after D, as far as D+1: it records how much later data that run saw.

* After the reverse pass, every partition of lake B was last written by a run that saw the
  same silver days as the run that last wrote it in lake A: the tables are equal in every
  column.
* After the second pass, the runs of lake B saw every later day, so ``data_through`` of the
  days up to 10-05 moves one day further than in lake A. Every other column, finality
  included, must still be equal: the counts depend only on purchases within the 24-hour
  window, and those are landed in both lakes.
* 10-07 stays not final in both lakes, because 10-08 is never landed.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import PROJECT_ROOT

from lakehouse.generator import GeneratorSettings, generate_days
from lakehouse.settings import GOLD_TABLES

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

DAG_FILE = PROJECT_ROOT / "dags" / "ecommerce_batch_lakehouse.py"
WEEK = [date(2019, 10, 1) + timedelta(days=n) for n in range(7)]
# Small days keep the 21 runs within the suite's time, because at this size a run's time is
# mostly Airflow's and Spark's fixed costs. 2,500 events still give a few dozen carts a day.
GENERATOR = GeneratorSettings(seed=2019, events_per_day=2500, duplicate_rate=0.002)


def load_dag():
    spec = importlib.util.spec_from_file_location("backfill_dag_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_days(lake: Path, days: list[date]) -> list[tuple[date, str, float]]:
    """Run the DAG once per day, in the given order, on the given lake."""
    previous = os.environ.get("LAKEHOUSE_LOCAL_ROOT")
    os.environ["LAKEHOUSE_LOCAL_ROOT"] = str(lake)
    runs = []
    try:
        for day in days:
            started = time.monotonic()
            logical_date = datetime(day.year, day.month, day.day, tzinfo=UTC)
            dag_run = load_dag().test(logical_date=logical_date)
            runs.append((day, str(dag_run.state), time.monotonic() - started))
    finally:
        if previous is None:
            os.environ.pop("LAKEHOUSE_LOCAL_ROOT", None)
        else:
            os.environ["LAKEHOUSE_LOCAL_ROOT"] = previous
    return runs


def gold_rows(lake: Path, table: str) -> list[dict]:
    pattern = str(lake / "gold" / table / "event_date=*" / "*.parquet")
    cursor = duckdb.connect().execute(
        f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true) ORDER BY ALL"
    )
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def snapshot(lake: Path) -> dict[str, list[dict]]:
    return {table: gold_rows(lake, table) for table in GOLD_TABLES}


def without(rows: list[dict], column: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != column} for row in rows]


@pytest.fixture(scope="module")
def week(tmp_path_factory, airflow_db):
    lake_a = tmp_path_factory.mktemp("backfill-lake")
    lake_b = tmp_path_factory.mktemp("reverse-lake")
    reports = generate_days(WEEK[0], WEEK[-1], GENERATOR, lake_root=lake_a)
    generate_days(WEEK[0], WEEK[-1], GENERATOR, lake_root=lake_b)

    backfill_runs = run_days(lake_a, WEEK)
    backfill = snapshot(lake_a)
    reverse_runs = run_days(lake_b, WEEK[::-1])
    after_reverse = snapshot(lake_b)
    rerun_runs = run_days(lake_b, WEEK)
    after_rerun = snapshot(lake_b)
    return {
        "reports": reports,
        "runs": backfill_runs + reverse_runs + rerun_runs,
        "backfill": backfill,
        "after_reverse": after_reverse,
        "after_rerun": after_rerun,
    }


def test_every_run_succeeds(week):
    failed = [(day, state) for day, state, _seconds in week["runs"] if state != "success"]
    assert failed == []
    assert len(week["runs"]) == 21


def test_landed_week_is_same_in_both_lakes(week):
    assert [r.day for r in week["reports"]] == WEEK
    assert all(r.rows > 1000 for r in week["reports"]), [r.rows for r in week["reports"]]


def test_every_table_has_every_day(week):
    for table in GOLD_TABLES:
        days = {row["event_date"] for row in week["backfill"][table]}
        assert days == set(WEEK), table


def test_daily_events_match_landed_rows(week):
    rows = {r["event_date"]: r for r in week["backfill"]["daily_unique_visitors"]}
    for report in week["reports"]:
        # The Glue script drops the injected duplicates and the few that occur by chance.
        assert (
            report.rows - report.duplicates - 5
            <= rows[report.day]["events"]
            <= report.rows - report.duplicates
        )


@pytest.mark.parametrize("table", GOLD_TABLES)
def test_reverse_order_equals_backfill(week, table):
    assert week["after_reverse"][table] == week["backfill"][table]


@pytest.mark.parametrize("table", [t for t in GOLD_TABLES if t != "cart_abandonment"])
def test_second_pass_equals_backfill(week, table):
    assert week["after_rerun"][table] == week["backfill"][table]


def test_second_pass_cart_abandonment_but_data_through(week):
    backfill = week["backfill"]["cart_abandonment"]
    rerun = week["after_rerun"]["cart_abandonment"]
    assert without(rerun, "data_through") == without(backfill, "data_through")
    for before, after in zip(backfill, rerun, strict=True):
        assert after["data_through"] >= before["data_through"], after["event_date"]


def test_finality_after_week(week):
    for name in ("backfill", "after_rerun"):
        rows = {r["event_date"]: r for r in week[name]["cart_abandonment"]}
        assert [rows[d]["is_final"] for d in WEEK] == [True] * 6 + [False], name
        assert [rows[d]["open_windows"] for d in WEEK[:6]] == [0] * 6, name
        assert rows[WEEK[-1]]["data_through"] == datetime(2019, 10, 8), name


def test_carts_both_abandoned_and_bought(week):
    rows = week["backfill"]["cart_abandonment"]
    assert sum(r["cart_events"] for r in rows) > 100
    assert all(0 < r["abandoned_carts"] < r["cart_events"] for r in rows)


def test_some_carts_bought_next_day(week):
    # Without purchases after midnight, the next day's run would never change a day's row.
    carts, purchases = set(), []
    for report in week["reports"]:
        with gzip.open(report.path, "rt") as stream:
            for row in csv.reader(stream):
                if row[1] == "cart":
                    carts.add((row[7], row[2], row[0][:10]))
                elif row[1] == "purchase":
                    purchases.append((row[7], row[2], row[0][:10]))
    next_day = [
        p
        for p in purchases
        if (p[0], p[1], (date.fromisoformat(p[2]) - timedelta(days=1)).isoformat()) in carts
    ]
    assert next_day, "no purchase of a cart from the day before"
