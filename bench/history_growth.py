"""Benchmark: does a day's run slow down as the lake's history grows?

Generates ``--days`` days (default 30) and runs the local DAG for each in order with
``dag.test()``, so that the last day runs with all the earlier days already in silver and gold.
Reports the run time of the last day against the first. A warm-up run on a scratch lake comes
first, so that the first measured day does not pay for starting Spark's JVM and importing
Airflow. Goal: last day / first day <= 1.2.

    .venv/bin/python bench/history_growth.py
    .venv/bin/python bench/history_growth.py --events-per-day 20000 --days 4 --json history.json
"""

from __future__ import annotations

import argparse
import statistics
from datetime import date, timedelta

import common

GOAL_RATIO = 1.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1_350_000, help="mean events per day")
    parser.add_argument(
        "--days", type=int, default=30, help="days in the history, the measured last one included"
    )
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2019, 10, 1), help="YYYY-MM-DD")
    common.add_common_arguments(parser)
    args = parser.parse_args()
    if args.days < 2:
        parser.error(f"invalid --days {args.days}: expected at least 2")

    lake, temporary = common.lake_directory(args)
    warmup_lake = lake / "_warmup"
    history_lake = lake / "history"
    airflow_home = common.prepare_environment(history_lake)
    runs = []
    try:
        from lakehouse.generator import GeneratorSettings, generate_days

        common.migrate_airflow_db()
        settings = GeneratorSettings(seed=args.seed, events_per_day=args.events_per_day)
        last_day = args.first_day + timedelta(days=args.days - 1)
        generate_days(args.first_day, last_day, settings, lake_root=history_lake)
        generate_days(args.first_day, args.first_day, settings, lake_root=warmup_lake)

        common.set_lake(warmup_lake)
        warmup = common.run_day(args.first_day)
        common.set_lake(history_lake)
        for offset in range(args.days):
            run = common.run_day(args.first_day + timedelta(days=offset))
            runs.append(run)
            print(f"day {run.day}: {run.state} in {run.wall_seconds:.1f} s", flush=True)
    finally:
        common.cleanup(airflow_home, *([lake] if temporary else [warmup_lake]))

    first, last = runs[0], runs[-1]
    ratio = last.wall_seconds / first.wall_seconds
    walls = [run.wall_seconds for run in runs]
    common.print_table(
        "Run time against history",
        [
            ("warm-up run s (not compared)", warmup.wall_seconds),
            (f"day 1 ({first.day}) s", first.wall_seconds),
            (f"day {len(runs)} ({last.day}) s", last.wall_seconds),
            ("ratio last / first", ratio),
            (f"goal: ratio <= {GOAL_RATIO}", "met" if ratio <= GOAL_RATIO else "not met"),
            ("median day s", statistics.median(walls)),
            ("slowest day s", max(walls)),
            ("failed days", sum(run.state != "success" for run in runs)),
        ],
    )
    common.write_json(
        args.json,
        {
            "benchmark": "history_growth",
            "events_per_day": args.events_per_day,
            "days": args.days,
            "first_seconds": first.wall_seconds,
            "last_seconds": last.wall_seconds,
            "ratio": ratio,
            "goal_ratio": GOAL_RATIO,
            "runs": [run.__dict__ for run in runs],
        },
    )
    return 0 if all(run.state == "success" for run in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
