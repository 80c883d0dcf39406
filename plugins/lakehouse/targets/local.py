"""The ``local`` target: each step of the batch DAG on this machine, with no AWS account.

The same Glue script runs on local Spark, the same SQL files on DuckDB, and the lake is a
directory laid out like the S3 bucket. Heavy imports (pyspark, duckdb, sqlglot, plotly) happen
inside ``execute`` so that parsing the DAG file stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from lakehouse.jobs import gold_asset
from lakehouse.params import GoldParameters, ParameterError, resolve_event_date
from lakehouse.settings import Settings
from lakehouse.targets.stream_local import LocalStreamSteps


def _event_date(context: Any) -> date:
    try:
        return resolve_event_date(context)
    except ParameterError as error:
        raise AirflowFailException(str(error)) from error


class LocalLandingSensor(BaseSensorOperator):
    """Wait for the day's landing files, then check each one's header and first row.

    A missing day is waited for until ``LAKEHOUSE_LANDING_TIMEOUT`` seconds. An empty file or a
    wrong header fails the task at once, naming the file and the expected header.
    """

    def poke(self, context: Any) -> bool:
        from lakehouse.landing import (
            LandingError,
            check_gzip,
            check_header,
            check_name,
            ignored_files,
            landing_files,
            read_prefix,
        )

        day = _event_date(context)
        day_dir = Path(Settings.from_env().lake.landing_day(day.isoformat()))
        files = landing_files(day_dir)
        if not files:
            self.log.info("No landing files for %s yet under %s", day, day_dir)
            return False
        ignored = [p.name for p in ignored_files(day_dir) if not p.name.startswith(("_", "."))]
        if ignored:
            self.log.warning("Not read, because not *.csv or *.csv.gz files: %s", ", ".join(ignored))
        for path in files:
            try:
                check_name(path.name)
                check_header(read_prefix(path), str(path))
                if path.name.endswith(".gz"):
                    check_gzip(path)
            except LandingError as error:
                raise AirflowFailException(str(error)) from error
        self.log.info("Landing files for %s: %s", day, ", ".join(p.name for p in files))
        return True

    def execute(self, context: Any) -> Any:
        settings = Settings.from_env()
        self.timeout = settings.landing_timeout_seconds
        self.poke_interval = settings.landing_poke_seconds
        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            day = _event_date(context)
            raise AirflowSensorTimeout(
                f"timed out after {self.timeout} s waiting for landing files of {day} under "
                f"{settings.lake.landing_day(day.isoformat())}; land them with "
                "`make land FILE=...` (or `python -m lakehouse.cli land FILE` with plugins/ on "
                "PYTHONPATH), then run the day again"
            ) from error


class LocalCrawlOperator(BaseOperator):
    """Register the raw or silver table and its partitions in the lake's DuckDB catalog."""

    template_fields = ("table",)

    def __init__(self, *, table: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table

    def execute(self, context: Any) -> dict[str, int]:
        from lakehouse.catalog import crawl

        result = crawl(Settings.from_env().local_root, self.table)
        self.log.info(
            "Registered %s with %d partitions: %s",
            result.view,
            len(result.partitions),
            ", ".join(result.partitions),
        )
        return result.partitions


def load_glue_script(path: Path) -> Any:
    """Import a Glue script by path, as Glue runs it: a module outside any package."""
    spec = importlib.util.spec_from_file_location(f"glue_script_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"Glue script not found: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def local_spark_session(master: str, driver_memory: str | None = None) -> Any:
    """Start or reuse a Spark session bound to 127.0.0.1, with the UI and progress bars off.

    :param driver_memory: the JVM heap, such as ``4g``, used only when this call starts the JVM.
        By default, ``LAKEHOUSE_SPARK_DRIVER_MEMORY`` through the settings.
    """
    driver_memory = driver_memory or Settings.from_env().spark_driver_memory
    from pyspark.sql import SparkSession

    # Without it the JVM resolves the host name and picks a network interface's address for its
    # internal services before the configs below apply.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        SparkSession.builder.master(master)
        .appName("ecommerce_lakehouse_local")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


class LocalGlueJobOperator(BaseOperator):
    """Run ``glue_scripts/raw_to_silver.py`` on local Spark with the Glue job's arguments."""

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.jobs import GLUE_SCRIPT, as_argv, glue_job_arguments

        settings = Settings.from_env()
        day = _event_date(context)
        arguments = glue_job_arguments(settings.lake, day)
        script = load_glue_script(settings.glue_scripts_dir / GLUE_SCRIPT)
        local_spark_session(settings.spark_master, settings.spark_driver_memory)
        self.log.info("Running %s with %s", GLUE_SCRIPT, json.dumps(arguments))
        metrics = script.main(as_argv(arguments))
        self.log.info("Glue script counts: %s", json.dumps(metrics))
        return metrics


def _read_job_metrics(metrics_dir: Path) -> dict[str, Any]:
    parts = sorted(metrics_dir.glob("part-*"))
    if not parts:
        raise AirflowFailException(
            f"metrics of the Glue job not found under {metrics_dir}: run transform_to_silver"
        )
    return json.loads(parts[0].read_text().strip())


class LocalSilverCheckOperator(BaseOperator):
    """Stop the run unless the day's silver accounts for every landed row and obeys the rules."""

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.gold import connect_duckdb, silver_view_sql
        from lakehouse.landing import count_rows, landing_files
        from lakehouse.quality import SilverProfile, evaluate, profile_sql

        settings = Settings.from_env()
        lake = settings.lake
        day = _event_date(context)
        rows_in = sum(count_rows(p) for p in landing_files(Path(lake.landing_day(day.isoformat()))))
        job = _read_job_metrics(Path(lake.metrics) / f"event_date={day.isoformat()}")
        silver_dir = Path(lake.silver_events) / f"event_date={day.isoformat()}"
        quarantine_dir = Path(lake.quarantine_events) / f"event_date={day.isoformat()}"
        connection = connect_duckdb()
        try:
            connection.execute(silver_view_sql(lake.silver_events))
            columns = {
                name: str(kind) for name, kind, *_ in connection.execute("DESCRIBE silver_events").fetchall()
            }
            cursor = connection.execute(profile_sql("silver_events", day))
            measured = dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
            quarantined = 0
            if any(quarantine_dir.glob("*.parquet")):
                quarantined = connection.execute(
                    "SELECT COUNT(*) FROM read_parquet(?)", [str(quarantine_dir / "*.parquet")]
                ).fetchone()[0]
        finally:
            connection.close()
        if not any(silver_dir.glob("*.parquet")):
            measured["silver_rows"] = 0
        profile = SilverProfile(
            event_date=day.isoformat(),
            rows_in=rows_in,
            quarantined_rows=quarantined,
            duplicates_dropped=int(job["duplicates_dropped"]),
            job_rows_in=int(job["rows_in"]),
            job_silver_rows=int(job["silver_rows"]),
            columns=columns,
            reject_reasons=job.get("reject_reasons", {}),
            **measured,
        )
        self.log.info("Data-quality counts: %s", profile.summary())
        if profile.reject_reasons:
            self.log.info("Quarantine reasons: %s", json.dumps(profile.reject_reasons))
        failures = evaluate(profile)
        if failures:
            raise AirflowFailException(
                f"data-quality gate failed for {day} ({profile.summary()}): " + "; ".join(failures)
            )
        return profile.__dict__


class LocalCtasOperator(BaseOperator):
    """Run one gold SQL file on DuckDB and publish the partitions it wrote."""

    template_fields = ("table",)

    def __init__(self, *, table: str, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [gold_asset(table)])
        super().__init__(**kwargs)
        self.table = table

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.gold import build_gold_local

        settings = Settings.from_env()
        try:
            parameters = GoldParameters.from_context(context)
        except ParameterError as error:
            raise AirflowFailException(str(error)) from error
        result = build_gold_local(settings.local_root, settings.sql_dir, self.table, parameters)
        self.log.info(
            "Gold table %s: rows per event_date %s, removed partitions %s",
            self.table,
            json.dumps(result.partitions),
            list(result.removed),
        )
        return {"partitions": result.partitions, "removed": list(result.removed)}


class LocalDashboardOperator(BaseOperator):
    """Regenerate the static HTML dashboard of the gold tables in the lake."""

    def execute(self, context: Any) -> str:
        from lakehouse.dashboard import build_dashboard

        settings = Settings.from_env()
        page = build_dashboard(settings.local_root, _event_date(context))
        self.log.info("Dashboard written to %s", page)
        return str(page)


class LocalTarget(LocalStreamSteps):
    """Builds each step of the batch DAG for the local lake."""

    name = "local"

    def check_landing(self, task_id: str) -> BaseOperator:
        return LocalLandingSensor(task_id=task_id, mode="poke")

    def crawl(self, task_id: str, table: str) -> BaseOperator:
        return LocalCrawlOperator(task_id=task_id, table=table)

    def transform_to_silver(self, task_id: str) -> BaseOperator:
        return LocalGlueJobOperator(task_id=task_id)

    def check_silver(self, task_id: str) -> BaseOperator:
        return LocalSilverCheckOperator(task_id=task_id)

    def build_gold(self, task_id: str, table: str) -> BaseOperator:
        return LocalCtasOperator(task_id=task_id, table=table)

    def refresh_dashboards(self, task_id: str) -> BaseOperator:
        return LocalDashboardOperator(task_id=task_id)
