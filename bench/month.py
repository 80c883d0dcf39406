"""Benchmark: a whole month day by day through the local target.

Generates ``--days`` days (default 31 of 1.35 million events, October 2019 at its real mean
volume) into a fresh lake, then runs the local DAG once per day in order with ``dag.test()``,
as a backfill would. Reports whether every day succeeded, the wall time of each day, and the
peak resident memory of this process and its children (Spark's JVM included) over the whole
month. Generation is timed apart. Goal: the month finishes, with a peak under 6 GB.

A warm-up day on a scratch lake comes first, as in ``history_growth.py``, so the month also
gives that benchmark's figure at full scale: day 30, with 29 days before it in the lake, against
day 1.

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
GOAL_HISTORY_RATIO = 1.2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1_350_000, help="mean events per day")
    parser.add_argument("--days", type=int, default=31, help="days to run (default 31)")
    parser.add_argument("--first-day", type=date.fromisoformat, default=date(2019, 10, 1), help="YYYY-MM-DD")
    common.add_common_arguments(parser)
    args = parser.parse_args()
    if args.days < 1:
        parser.error(f"invalid --days {args.days}: expected at least 1")

    root, temporary = common.lake_directory(args)
    lake, warmup_lake = root / "month", root / "_warmup"
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
        generate_days(
            args.first_day,
            args.first_day,
            GeneratorSettings(seed=args.seed + 1, events_per_day=args.events_per_day),
            lake_root=warmup_lake,
        )
        common.set_lake(warmup_lake)
        warmup = common.run_day(args.first_day)
        common.set_lake(lake)

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
        common.cleanup(airflow_home, *([root] if temporary else [warmup_lake]))

    walls = [run.wall_seconds for run in runs]
    succeeded = sum(run.state == "success" for run in runs)
    finished = succeeded == len(reports)
    peak_ok = memory.peak_bytes < GOAL_PEAK_BYTES
    # Day 30 of a month, or the last day of a shorter run.
    history_ratio = runs[min(29, len(runs) - 1)].wall_seconds / runs[0].wall_seconds
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
            ("warm-up day s (not in the month)", warmup.wall_seconds),
            ("day 1 s", walls[0]),
            (f"day {min(30, len(runs))} s", walls[min(29, len(runs) - 1)]),
            (f"ratio day {min(30, len(runs))} / day 1", history_ratio),
            (
                f"goal: ratio <= {GOAL_HISTORY_RATIO}",
                "met" if history_ratio <= GOAL_HISTORY_RATIO else "not met",
            ),
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
            "warmup_seconds": warmup.wall_seconds,
            "history_ratio": history_ratio,
            "goal_history_ratio": GOAL_HISTORY_RATIO,
            "runs": [run.__dict__ for run in runs],
        },
    )
    return 0 if finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
