"""Benchmark: parse time of the batch DAG file against an empty DAG file.

Airflow's DAG processor parses each file in a process forked from one that has already
imported Airflow. This script does the same: it imports Airflow once, then for each repetition
forks a child that executes one DAG file as a fresh module and reports the elapsed time. The
empty file defines a DAG with no tasks and the same ``airflow.sdk`` import, so the difference
is what the project's own imports and DAG construction cost. Goal: the median difference at
most 100 ms.

Each file is measured twice: first with only ``airflow.sdk`` imported in the parent, then
with the providers' asset URI handlers also discovered in the parent. The DAG's gold assets
trigger that discovery, because ``Asset(uri=...)`` looks up a handler for the URI scheme. It
imports every installed provider's asset module once per process, which an empty DAG never
does.

    .venv/bin/python bench/parse_time.py
    .venv/bin/python bench/parse_time.py --repetitions 10 --json parse_time.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

import common

GOAL_EXTRA_SECONDS = 0.100
EMPTY_DAG = '''"""A DAG with no tasks: the baseline of the parse-time benchmark."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

with DAG(dag_id="empty_baseline", schedule=None, start_date=pendulum.datetime(2019, 10, 1, tz="UTC")) as dag:
    pass
'''


def parse_once(path: Path) -> float:
    """Execute a DAG file in a forked child and return the seconds the child measured."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        status = 0
        try:
            import importlib.util

            started = time.perf_counter()
            spec = importlib.util.spec_from_file_location("dag_under_parse", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            elapsed = time.perf_counter() - started
        except BaseException:
            elapsed = -1.0
            status = 1
        os.write(write_end, struct.pack("d", elapsed))
        os._exit(status)
    os.close(write_end)
    data = os.read(read_end, 8)
    os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    elapsed = struct.unpack("d", data)[0] if len(data) == 8 else -1.0
    if status != 0 or elapsed < 0:
        raise RuntimeError(f"parsing {path} failed in the child process (exit status {status})")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=50, help="parses of each file (default 50)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    if args.repetitions < 1:
        parser.error(f"invalid --repetitions {args.repetitions}: expected at least 1")

    work = Path(tempfile.mkdtemp(prefix="lakehouse-bench-parse-"))
    airflow_home = common.prepare_environment(work / "lake")
    try:
        # Import Airflow in the parent, as the DAG processor has before it forks.
        import airflow.sdk  # noqa: F401

        empty = work / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        results = {"cold providers": measure(empty, args.repetitions)}
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        ProvidersManagerTaskRuntime().asset_uri_handlers  # noqa: B018 - discovery is the side effect
        results["providers discovered in parent"] = measure(empty, args.repetitions)
    finally:
        common.cleanup(work, airflow_home)

    rows: list[tuple[str, object]] = [("repetitions", args.repetitions)]
    figures = {}
    for mode, (empty_times, dag_times) in results.items():
        empty_median = statistics.median(empty_times)
        dag_median = statistics.median(dag_times)
        extra = dag_median - empty_median
        rows += [
            (f"{mode}: empty DAG file ms", empty_median * 1000),
            (f"{mode}: {common.DAG_FILE.name} ms", dag_median * 1000),
            (f"{mode}: extra ms", extra * 1000),
            (
                f"{mode}: goal extra <= {GOAL_EXTRA_SECONDS * 1000:.0f} ms",
                "met" if extra <= GOAL_EXTRA_SECONDS else "not met",
            ),
        ]
        figures[mode] = {
            "empty_median_seconds": empty_median,
            "dag_median_seconds": dag_median,
            "extra_seconds": extra,
        }
    common.print_table("DAG file parse time (median of forked parses)", rows)
    common.write_json(
        args.json,
        {
            "benchmark": "parse_time",
            "repetitions": args.repetitions,
            "goal_extra_seconds": GOAL_EXTRA_SECONDS,
            "modes": figures,
        },
    )
    return 0


def measure(empty: Path, repetitions: int) -> tuple[list[float], list[float]]:
    """Parse the empty file and the DAG file ``repetitions`` times each, after one warm-up."""
    parse_once(empty)
    parse_once(common.DAG_FILE)
    empty_times, dag_times = [], []
    # Interleaved, so that a slow moment of the machine hits both files alike.
    for _ in range(repetitions):
        empty_times.append(parse_once(empty))
        dag_times.append(parse_once(common.DAG_FILE))
    return empty_times, dag_times


if __name__ == "__main__":
    raise SystemExit(main())
