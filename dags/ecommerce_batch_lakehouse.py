"""
### eCommerce batch lakehouse

Processes one UTC day of the REES46 eCommerce events, from raw CSV files in the landing zone to
the gold tables behind the dashboards:

1. `check_landing`: the day's files exist, are non-empty and start with the expected header;
2. `crawl_raw`: the raw table and its partitions are registered in the catalog;
3. `transform_to_silver`: the Glue script types, deduplicates and quarantines the rows;
4. `check_silver`: rows in = silver + quarantined + duplicates, and the value rules hold;
5. `crawl_silver`: the silver table and its new partition are registered;
6. `build_gold_<table>`: one Athena CTAS file of `include/sql/` per gold table;
7. `refresh_dashboards`: QuickSight SPICE ingestion on AWS, a static HTML page locally.

`LAKEHOUSE_TARGET` (`local` by default, or `aws`) picks how each step runs; the task ids and
their order are the same on both. The day is the `event_date` parameter when set, otherwise the
run's data interval (scheduled runs) or logical date (`airflow dags test DAG 2019-10-01`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

from lakehouse.macros import MACROS
from lakehouse.params import BATCH_PARAMS
from lakehouse.settings import GOLD_TABLES, Settings
from lakehouse.targets import load_target

DAG_ID = "ecommerce_batch_lakehouse"

target = load_target()
settings = Settings.from_env()

with DAG(
    dag_id=DAG_ID,
    description="Daily eCommerce events: landing to silver to gold tables and dashboards",
    doc_md=__doc__,
    # A data-interval timetable, so that the scheduled run of [D, D+1) has logical date D.
    # LAKEHOUSE_BATCH_SCHEDULE=none leaves it to manual runs, as the local Airflow does.
    schedule=(
        CronDataIntervalTimetable(settings.batch_schedule, timezone="UTC")
        if settings.batch_schedule
        else None
    ),
    start_date=pendulum.datetime(2019, 10, 1, tz="UTC"),
    catchup=False,
    # Cart abandonment reads the neighbouring days, so days run one after another.
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        "execution_timeout": timedelta(hours=2),
    },
    params=BATCH_PARAMS,
    user_defined_macros=MACROS,
    tags=["ecommerce", "lakehouse", "batch"],
) as dag:
    check_landing = target.check_landing("check_landing")
    crawl_raw = target.crawl("crawl_raw", "raw")
    transform_to_silver = target.transform_to_silver("transform_to_silver")
    check_silver = target.check_silver("check_silver")
    crawl_silver = target.crawl("crawl_silver", "silver")
    build_gold = [target.build_gold(f"build_gold_{table}", table) for table in GOLD_TABLES]
    refresh_dashboards = target.refresh_dashboards("refresh_dashboards")

    chain(
        check_landing,
        crawl_raw,
        transform_to_silver,
        check_silver,
        crawl_silver,
        build_gold,
        refresh_dashboards,
    )
