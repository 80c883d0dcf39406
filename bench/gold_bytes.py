"""Benchmark: bytes read by one day's gold refresh against that day's raw CSV bytes.

Generates a few days (default 3 of 1.35 million events) and turns each into silver with the
Glue script on local Spark. Then it builds the five gold tables of the middle day on DuckDB, as
the DAG's ``build_gold_*`` tasks do, and counts the bytes this process reads from files
meanwhile. The count is ``read_chars`` of ``/proc/self/io`` (through psutil): every read and
pread, page-cache hits included, so it does not depend on a warm or cold cache. The middle day is used
because cart abandonment reads the day before and the day after. Goal: at most 5 % of the
day's uncompressed raw CSV bytes.

    .venv/bin/python bench/gold_bytes.py
    .venv/bin/python bench/gold_bytes.py --events-per-day 20000 --days 3 --json gold_bytes.json
"""

from __future__ import annotations

import argparse
import gzip
from datetime import date, timedelta

import common

GOAL_SHARE = 0.05


def uncompressed_size(path) -> int:
    opener = gzip.open if path.name.endswith(".gz") else open
    size = 0
    with opener(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            size += len(chunk)
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1_350_000, help="mean events per day")
    parser.add_argument("--days", type=int, default=3, help="days to generate and turn into silver (>= 1)")
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2019, 10, 1), help="YYYY-MM-DD")
    common.add_common_arguments(parser)
    args = parser.parse_args()
    if args.days < 1:
        parser.error(f"invalid --days {args.days}: expected at least 1")

    lake, temporary = common.lake_directory(args)
    common.prepare_environment(lake)
    try:
        import psutil
        import raw_to_silver as glue

        from lakehouse.generator import GeneratorSettings, generate_days
        from lakehouse.gold import build_gold_local
        from lakehouse.params import GoldParameters
        from lakehouse.settings import GOLD_TABLES, Lake, Settings
        from lakehouse.targets.local import local_spark_session

        last_day = args.first_day + timedelta(days=args.days - 1)
        reports = generate_days(
            args.first_day,
            last_day,
            GeneratorSettings(seed=args.seed, events_per_day=args.events_per_day),
            lake_root=lake,
        )
        spark = local_spark_session("local[*]")
        local_lake = Lake(str(lake))
        for report in reports:
            glue.run(
                spark,
                {
                    "landing_path": local_lake.landing_day(report.day.isoformat()),
                    "silver_path": local_lake.silver_events,
                    "quarantine_path": local_lake.quarantine_events,
                    "metrics_path": local_lake.metrics,
                    "event_date": report.day.isoformat(),
                },
            )
        spark.stop()

        measured = reports[len(reports) // 2]
        raw_bytes = uncompressed_size(measured.path)
        raw_gzip_bytes = measured.path.stat().st_size
        settings = Settings.from_env()
        parameters = GoldParameters(event_date=measured.day)
        process = psutil.Process()
        # Warm the imports, so that reading Python modules is not counted as the refresh's reads.
        import duckdb  # noqa: F401
        import jinja2  # noqa: F401
        import sqlglot  # noqa: F401

        bytes_by_table = {}
        for table in GOLD_TABLES:
            before = process.io_counters().read_chars
            build_gold_local(settings.local_root, settings.sql_dir, table, parameters)
            bytes_by_table[table] = process.io_counters().read_chars - before
        silver_bytes = sum(
            p.stat().st_size
            for p in (lake / "silver" / "events" / f"event_date={measured.day}").glob("*.parquet")
        )
    finally:
        if temporary:
            common.cleanup(lake)

    total = sum(bytes_by_table.values())
    share = total / raw_bytes
    rows = [
        ("day measured", measured.day.isoformat()),
        ("days in silver", len(reports)),
        ("events of the day", measured.rows),
        ("raw CSV bytes (uncompressed)", raw_bytes),
        ("raw gzip bytes", raw_gzip_bytes),
        ("silver Parquet bytes of the day", silver_bytes),
    ]
    rows += [(f"read by {table}", n) for table, n in bytes_by_table.items()]
    rows += [
        ("read by the gold refresh", total),
        ("share of raw CSV bytes", f"{share:.2%}"),
        (f"goal: <= {GOAL_SHARE:.0%}", "met" if share <= GOAL_SHARE else "not met"),
    ]
    common.print_table("Bytes read by one day's gold refresh", rows)
    common.write_json(
        args.json,
        {
            "benchmark": "gold_bytes",
            "day": measured.day.isoformat(),
            "days_in_silver": len(reports),
            "events": measured.rows,
            "raw_csv_bytes": raw_bytes,
            "raw_gzip_bytes": raw_gzip_bytes,
            "silver_bytes": silver_bytes,
            "bytes_read_by_table": bytes_by_table,
            "bytes_read": total,
            "share_of_raw": share,
            "goal_share": GOAL_SHARE,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
