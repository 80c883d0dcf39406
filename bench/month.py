"""Benchmark: a whole month day by day through the local target.

Generates ``--days`` days (default 31 of 1.35 million events, October 2019 at its real mean
volume) into a fresh lake, then runs the local DAG once per day in order with ``dag.test()``,
as a backfill would. Reports whether every day succeeded, the wall time of each day, and the
peak resident memory of this process and its children (Spark's JVM included) over the whole
month. Generation is timed apart. Goal: the month finishes, with a peak under 6 GB.

    .venv/bin/python bench/month.py
    .venv/bin/python bench/month.py --events-per-day 20000 --days 3 --json month.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from datetime import date, timedelta

import common

GOAL_PEAK_BYTES = 6 * 10**9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1_350_000, help="mean events per day")
    parser.add_argument("--days", type=int, default=31, help="days to run (default 31)")
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2019, 10, 1), help="YYYY-MM-DD")
    common.add_common_arguments(parser)
    args = parser.parse_args()
    if args.days < 1:
        parser.error(f"invalid --days {args.days}: expected at least 1")

    lake, temporary = common.lake_directory(args)
    airflow_home = common.prepare_environment(lake)
    runs = []
    try:
        from lakehouse.generator import GeneratorSettings, generate_days

        common.migrate_airflow_db()
        last_day = args.first_day + timedelta(days=args.days - 1)
        started = time.monotonic()
        reports = generate_days(
            args.first_day,
            last_day,
            GeneratorSettings(seed=args.seed, events_per_day=args.events_per_day),
            lake_root=lake,
        )
        generation_seconds = time.monotonic() - started
        raw_bytes = sum(r.path.stat().st_size for r in reports)

        with common.PeakMemory() as memory:
            for report in reports:
                run = common.run_day(report.day)
                runs.append(run)
                print(
                    f"day {run.day}: {run.state} in {run.wall_seconds:.1f} s, "
                    f"peak so far {common.mib(memory.peak_bytes):,.0f} MiB",
                    flush=True,
                )
        lake_bytes = sum(p.stat().st_size for p in lake.rglob("*") if p.is_file())
        disk_free = shutil.disk_usage(lake).free
    finally:
        common.cleanup(airflow_home, *([lake] if temporary else []))

    walls = [run.wall_seconds for run in runs]
    succeeded = sum(run.state == "success" for run in runs)
    finished = succeeded == len(reports)
    peak_ok = memory.peak_bytes < GOAL_PEAK_BYTES
    common.print_table(
        "A month day by day on the local target",
        [
            ("days", len(reports)),
            ("events", sum(r.rows for r in reports)),
            ("raw gzip bytes", raw_bytes),
            ("generation s (not in the runs)", generation_seconds),
            ("days succeeded", succeeded),
            ("total run s", sum(walls)),
            ("median day s", statistics.median(walls)),
            ("slowest day s", max(walls)),
            ("peak RSS of process tree MiB", common.mib(memory.peak_bytes)),
            ("lake bytes at the end", lake_bytes),
            ("disk free at the end bytes", disk_free),
            ("goal: finishes, peak < 6 GB", "met" if finished and peak_ok else "not met"),
        ],
    )
    common.write_json(
        args.json,
        {
            "benchmark": "month",
            "events_per_day": args.events_per_day,
            "days": len(reports),
            "events": sum(r.rows for r in reports),
            "generation_seconds": generation_seconds,
            "succeeded_days": succeeded,
            "peak_rss_bytes": memory.peak_bytes,
            "goal_peak_bytes": GOAL_PEAK_BYTES,
            "lake_bytes": lake_bytes,
            "runs": [run.__dict__ for run in runs],
        },
    )
    return 0 if finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
