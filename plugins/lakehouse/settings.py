"""Settings of the lakehouse, read from environment variables only.

Nothing here calls the network, a Variable or a Connection: DAG files import this module while
they are parsed. Tasks call ``Settings.from_env()`` when they run, so a changed variable takes
effect on the next task without a new DAG version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TARGETS = ("local", "aws")
DEFAULT_TARGET = "local"
DEFAULT_SCHEDULE = "0 0 * * *"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

GOLD_TABLES = (
    "daily_unique_visitors",
    "cart_abandonment",
    "top_categories_hourly",
    "top_categories_weekday",
    "brand_marketing",
)

_BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")
# The stream that deploy/infrastructure.yaml creates (its KinesisStreamName default).
DEFAULT_STREAM_NAME = "ecommerce-events"
# Kinesis stream names: 1 to 128 letters, digits, '_', '.' or '-' (CreateStream API reference).
# "." and ".." are rejected as well, because the name is also a folder of replay checkpoints.
STREAM_NAME_PATTERN = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$")
# Managed Service for Apache Flink application names follow the same rule.
_FLINK_APPLICATION_PATTERN = STREAM_NAME_PATTERN
# A guard against typos only: the account's Kinesis shard quota applies on top of it.
MAX_STREAM_SHARDS = 10_000


class SettingsError(ValueError):
    """An environment variable of the lakehouse has an invalid value."""


def target_name(env: Mapping[str, str] = os.environ) -> str:
    """Return the target, ``local`` or ``aws``, from ``LAKEHOUSE_TARGET``."""
    target = env.get("LAKEHOUSE_TARGET", DEFAULT_TARGET).strip().lower() or DEFAULT_TARGET
    if target not in TARGETS:
        raise SettingsError(f"invalid LAKEHOUSE_TARGET {target!r}: expected one of {', '.join(TARGETS)}")
    return target


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingsError(f"invalid {name} {raw!r}: expected a positive whole number")
    return value


def _name(env: Mapping[str, str], variable: str, default: str) -> str:
    value = env.get(variable, "").strip() or default
    if not _NAME_PATTERN.match(value):
        raise SettingsError(f"invalid {variable} {value!r}: expected letters, digits, '_', '.' or '-'")
    return value


def _stream_shards(env: Mapping[str, str]) -> int | None:
    """Return the shard count of a stream the DAG creates, or None for on-demand capacity."""
    raw = env.get("LAKEHOUSE_STREAM_SHARDS", "").strip().lower()
    if raw in ("", "on-demand", "on_demand", "ondemand"):
        return None
    shards = _positive_int(env, "LAKEHOUSE_STREAM_SHARDS", 1)
    if shards > MAX_STREAM_SHARDS:
        raise SettingsError(
            f"invalid LAKEHOUSE_STREAM_SHARDS {raw!r}: expected 'on-demand' or 1 to {MAX_STREAM_SHARDS}"
        )
    return shards


def _jvm_memory(env: Mapping[str, str], name: str, default: str) -> str:
    """Return a JVM memory size such as ``4g`` or ``512m``, as ``spark.driver.memory`` takes it."""
    value = env.get(name, "").strip().lower() or default
    if not re.fullmatch(r"[1-9][0-9]*[kmgt]", value):
        raise SettingsError(f"invalid {name} {value!r}: expected a size such as 4g or 512m")
    return value


def _port(env: Mapping[str, str], name: str) -> int:
    """Return a TCP port, or 0 to let the system pick a free one."""
    raw = env.get(name, "").strip()
    if not raw or raw == "0":
        return 0
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"invalid {name} {raw!r}: expected a TCP port from 1 to 65535, or 0")
    return int(raw)


def _project_dir(env: Mapping[str, str], variable: str, *parts: str) -> Path:
    """Find a folder of the project: in the repository, or in the DAGs folder as on MWAA.

    MWAA gives its workers the DAGs folder, plugins.zip, requirements.txt and startup.sh only,
    so the deployment puts
    ``include/sql`` and ``glue_scripts`` under the DAGs folder.
    """
    if env.get(variable, "").strip():
        return Path(env[variable].strip())
    dags_folder = env.get("AIRFLOW__CORE__DAGS_FOLDER") or str(
        Path(env.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "dags"
    )
    candidates = [PROJECT_ROOT.joinpath(*parts), Path(dags_folder).joinpath(*parts)]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _stream_name(env: Mapping[str, str]) -> str:
    value = env.get("LAKEHOUSE_STREAM_NAME", "").strip() or DEFAULT_STREAM_NAME
    if not STREAM_NAME_PATTERN.match(value):
        raise SettingsError(
            f"invalid LAKEHOUSE_STREAM_NAME {value!r}: expected 1 to 128 letters, digits, '_', '.' or '-'"
        )
    return value


def _flink_application(env: Mapping[str, str]) -> str:
    """Return the Flink application to start before a replay, or '' when there is none."""
    value = env.get("LAKEHOUSE_FLINK_APPLICATION", "").strip()
    if value and not _FLINK_APPLICATION_PATTERN.match(value):
        raise SettingsError(
            f"invalid LAKEHOUSE_FLINK_APPLICATION {value!r}: expected 1 to 128 letters, digits, '_', '.' or '-'"
        )
    return value


def _schedule(env: Mapping[str, str]) -> str | None:
    """Return the batch DAG's cron expression, or None when ``LAKEHOUSE_BATCH_SCHEDULE=none``."""
    value = env.get("LAKEHOUSE_BATCH_SCHEDULE", "").strip() or DEFAULT_SCHEDULE
    if value.lower() == "none":
        return None
    if len(value.split()) != 5 or not re.fullmatch(r"[0-9*/,\- ]+", value):
        raise SettingsError(
            f"invalid LAKEHOUSE_BATCH_SCHEDULE {value!r}: expected a 5-field cron expression or 'none'"
        )
    return value


@dataclass(frozen=True)
class Settings:
    """Location of the lake and the names and limits each target uses."""

    target: str
    local_root: Path
    bucket: str
    glue_database: str
    glue_job_name: str
    glue_role: str
    athena_workgroup: str
    aws_conn_id: str
    quicksight_dataset_prefix: str
    glue_worker_type: str
    glue_workers: int
    landing_timeout_seconds: int
    landing_poke_seconds: int
    retry_delay_seconds: int
    batch_schedule: str | None
    sql_dir: Path
    glue_scripts_dir: Path
    spark_master: str
    # Local mode runs every task in the driver JVM, and Spark's default heap of 1g ran out
    # caching a day of 10 million rows.
    spark_driver_memory: str = "4g"
    # The streaming replay DAG. Defaults keep Settings(...) built by hand valid.
    stream_name: str = DEFAULT_STREAM_NAME
    stream_shards: int | None = None
    flink_application: str = ""
    kinesis_local_port: int = 0
    replay_log_interval_seconds: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        bucket = env.get("LAKEHOUSE_BUCKET", "").strip()
        if bucket and not _BUCKET_PATTERN.match(bucket):
            raise SettingsError(f"invalid LAKEHOUSE_BUCKET {bucket!r}: expected an S3 bucket name")
        root = env.get("LAKEHOUSE_LOCAL_ROOT", "").strip()
        return cls(
            target=target_name(env),
            local_root=Path(root).expanduser().resolve() if root else PROJECT_ROOT / ".lake",
            bucket=bucket,
            glue_database=_name(env, "LAKEHOUSE_GLUE_DATABASE", "ecommerce_lakehouse"),
            glue_job_name=_name(env, "LAKEHOUSE_GLUE_JOB_NAME", "ecommerce_raw_to_silver"),
            glue_role=env.get("LAKEHOUSE_GLUE_ROLE", "").strip(),
            athena_workgroup=_name(env, "LAKEHOUSE_ATHENA_WORKGROUP", "ecommerce_lakehouse"),
            aws_conn_id=_name(env, "LAKEHOUSE_AWS_CONN_ID", "aws_default"),
            quicksight_dataset_prefix=_name(env, "LAKEHOUSE_QUICKSIGHT_DATASET_PREFIX", "ecommerce_"),
            glue_worker_type=_name(env, "LAKEHOUSE_GLUE_WORKER_TYPE", "G.1X"),
            glue_workers=_positive_int(env, "LAKEHOUSE_GLUE_WORKERS", 2),
            landing_timeout_seconds=_positive_int(env, "LAKEHOUSE_LANDING_TIMEOUT", 6 * 3600),
            landing_poke_seconds=_positive_int(env, "LAKEHOUSE_LANDING_POKE_INTERVAL", 60),
            retry_delay_seconds=_positive_int(env, "LAKEHOUSE_RETRY_DELAY", 120),
            batch_schedule=_schedule(env),
            sql_dir=_project_dir(env, "LAKEHOUSE_SQL_DIR", "include", "sql"),
            glue_scripts_dir=_project_dir(env, "LAKEHOUSE_GLUE_SCRIPTS_DIR", "glue_scripts"),
            spark_master=env.get("LAKEHOUSE_SPARK_MASTER", "").strip() or "local[*]",
            spark_driver_memory=_jvm_memory(env, "LAKEHOUSE_SPARK_DRIVER_MEMORY", "4g"),
            stream_name=_stream_name(env),
            stream_shards=_stream_shards(env),
            flink_application=_flink_application(env),
            kinesis_local_port=_port(env, "LAKEHOUSE_KINESIS_LOCAL_PORT"),
            replay_log_interval_seconds=_positive_int(env, "LAKEHOUSE_REPLAY_LOG_INTERVAL", 30),
        )

    @property
    def athena_output(self) -> str:
        return self.lake.path("athena-results") + "/"

    @property
    def lake(self) -> Lake:
        if self.target == "aws":
            if not self.bucket:
                raise SettingsError("missing LAKEHOUSE_BUCKET: the aws target needs the data bucket")
            return Lake(f"s3://{self.bucket}")
        return Lake(str(self.local_root))


@dataclass(frozen=True)
class Lake:
    """The zones of the lake under one base: a local directory or ``s3://bucket``.

    Both targets use the same relative layout, so a path computed here is valid on either.
    """

    base: str

    def path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *(p.strip("/") for p in parts)])

    def landing_day(self, day: str) -> str:
        return self.path("landing", "events", f"event_date={day}")

    @property
    def silver_events(self) -> str:
        return self.path("silver", "events")

    @property
    def quarantine_events(self) -> str:
        return self.path("quarantine", "events")

    @property
    def landing_quarantine(self) -> str:
        return self.path("quarantine", "landing")

    @property
    def metrics(self) -> str:
        return self.path("metrics", "raw_to_silver")

    def gold_table(self, table: str) -> str:
        return self.path("gold", table)

    def gold_run(self, table: str, token: str) -> str:
        """Return where one run's CTAS writes; on AWS its partitions stay there once published."""
        return self.path("gold", "_runs", table, token)

    @property
    def catalog_file(self) -> str:
        return self.path("catalog", "lakehouse.duckdb")

    @property
    def dashboard_dir(self) -> str:
        return self.path("dashboard")

    @property
    def replay_checkpoints(self) -> str:
        return self.path("replay", "checkpoints")

    @property
    def kinesis_local_dir(self) -> str:
        """Folder of the local Kinesis endpoint's address file and log; local target only."""
        return self.path("kinesis")
