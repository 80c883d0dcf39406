"""Shared setup of the benchmark scripts: a private Airflow home, the lake, timing and memory.

Import this module before anything imports Airflow: Airflow reads its configuration once, at
import. Every script runs the ``local`` target only and makes no network call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = PROJECT_ROOT / "dags" / "ecommerce_batch_lakehouse.py"
sys.path.insert(0, str(PROJECT_ROOT / "plugins"))
sys.path.insert(0, str(PROJECT_ROOT / "glue_scripts"))


def prepare_environment(lake: Path) -> Path:
    """Point Airflow at a fresh private home with SQLite and the lakehouse at ``lake``."""
    airflow_home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-airflow-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "LAKEHOUSE_TARGET": "local",
            "LAKEHOUSE_LOCAL_ROOT": str(lake),
            "PYSPARK_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep),
        }
    )
    return airflow_home


def migrate_airflow_db() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def set_lake(lake: Path) -> None:
    os.environ["LAKEHOUSE_LOCAL_ROOT"] = str(lake)


def load_dag() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("batch_dag_bench", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@dataclass
class DayRun:
    """One ``dag.test()`` run: its state, wall time and seconds per task."""

    day: str
    state: str
    wall_seconds: float
    task_seconds: dict[str, float] = field(default_factory=dict)


def run_day(day: date) -> DayRun:
    """Run the batch DAG for one day with ``dag.test()`` and read each task's start and end."""
    logical_date = datetime(day.year, day.month, day.day, tzinfo=UTC)
    started = time.monotonic()
    dag_run = load_dag().test(logical_date=logical_date)
    wall = time.monotonic() - started
    tasks = {}
    finished = [ti for ti in dag_run.get_task_instances() if ti.start_date and ti.end_date]
    for ti in sorted(finished, key=lambda ti: ti.start_date):
        tasks[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
    return DayRun(day=day.isoformat(), state=str(dag_run.state), wall_seconds=wall, task_seconds=tasks)


class PeakMemory:
    """Sample the resident memory of this process and all its children every ``interval`` s.

    Spark's JVM is a child of this process, so the sum covers the driver and the executors of
    ``local[*]``. Samples miss peaks shorter than the interval.
    """

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process()
        self._psutil = psutil
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def _tree_rss(self) -> int:
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._tree_rss())


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to this file")
    parser.add_argument("--lake", help="lake directory to use (default: a temporary one, removed at the end)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic events")


def lake_directory(args: argparse.Namespace) -> tuple[Path, bool]:
    """Return the lake to use and whether it is temporary (to be removed at the end)."""
    if args.lake:
        path = Path(args.lake).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix="lakehouse-bench-lake-")), True


def cleanup(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    for name, value in rows:
        if isinstance(value, float):
            value = f"{value:,.2f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        print(f"  {name:<{width}}  {value}")


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    if not path:
        return
    figures = {**figures, "machine": machine()}
    Path(path).write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\nfigures written to {path}")


def mib(value: int) -> float:
    return value / 2**20
