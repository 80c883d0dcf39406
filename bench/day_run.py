"""Benchmark: the whole local daily DAG run on one generated day.

Generates one synthetic day (default 1.35 million events, the real daily mean) into a fresh
lake, then runs ``ecommerce_batch_lakehouse`` for it with ``dag.test()``. It measures the wall
time, the time of each task, and the peak resident memory of this process and its children,
Spark's JVM included. Generation is timed apart and is not part of the run. Goal: the run in
under 45 s on 2 cores.

    .venv/bin/python bench/day_run.py
    .venv/bin/python bench/day_run.py --events-per-day 20000 --json day_run.json
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import common

GOAL_SECONDS = 45.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1_350_000, help="mean events of the day")
    parser.add_argument(
        "--day", type=date.fromisoformat, default=date(2019, 10, 1), help="UTC day, YYYY-MM-DD"
    )
    common.add_common_arguments(parser)
    args = parser.parse_args()

    lake, temporary = common.lake_directory(args)
    airflow_home = common.prepare_environment(lake)
    try:
        from lakehouse.generator import GeneratorSettings, generate_days

        common.migrate_airflow_db()
        started = time.monotonic()
        settings = GeneratorSettings(seed=args.seed, events_per_day=args.events_per_day)
        (report,) = generate_days(args.day, args.day, settings, lake_root=lake)
        generation_seconds = time.monotonic() - started
        raw_bytes = report.path.stat().st_size

        with common.PeakMemory() as memory:
            run = common.run_day(args.day)
    finally:
        common.cleanup(airflow_home, *([lake] if temporary else []))

    rows = [
        ("day", args.day.isoformat()),
        ("events landed", report.rows),
        ("raw file (gzip) MiB", common.mib(raw_bytes)),
        ("generation s (not in the run)", generation_seconds),
        ("DAG run state", run.state),
        ("DAG run wall s", run.wall_seconds),
        (f"goal: wall < {GOAL_SECONDS:.0f} s", "met" if run.wall_seconds < GOAL_SECONDS else "not met"),
        ("peak RSS of process tree MiB", common.mib(memory.peak_bytes)),
    ]
    rows += [(f"task {task} s", seconds) for task, seconds in run.task_seconds.items()]
    common.print_table("Local daily DAG run", rows)
    common.write_json(
        args.json,
        {
            "benchmark": "day_run",
            "day": args.day.isoformat(),
            "events": report.rows,
            "raw_gzip_bytes": raw_bytes,
            "generation_seconds": generation_seconds,
            "state": run.state,
            "wall_seconds": run.wall_seconds,
            "goal_seconds": GOAL_SECONDS,
            "peak_rss_bytes": memory.peak_bytes,
            "task_seconds": run.task_seconds,
        },
    )
    return 0 if run.state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
