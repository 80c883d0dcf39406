"""The ``aws`` target: each step of the batch DAG with the Amazon provider's operators.

Every setting reaches an operator through a template (``{{ lakehouse_settings().bucket }}``), so
it is resolved when the task runs. Where the provider has an operator for a step, the step is
that operator. Two steps have none, the data-quality gate and the publication of a CTAS result
as a table's partitions, so they use the provider's hooks.

Required IAM permissions of the MWAA execution role, per step:

* check_landing: ``s3:ListBucket`` on the data bucket, ``s3:GetObject`` on ``landing/*``;
* crawl_raw, crawl_silver: ``glue:GetCrawler``, ``glue:CreateCrawler``, ``glue:UpdateCrawler``,
  ``glue:StartCrawler``, ``iam:PassRole`` on the Glue role;
* transform_to_silver: ``glue:GetJob``, ``glue:CreateJob``, ``glue:UpdateJob``,
  ``glue:StartJobRun``, ``glue:GetJobRun(s)``, ``glue:BatchStopJobRun``, ``iam:PassRole``,
  ``s3:PutObject`` on ``artifacts/glue-scripts/*``;
* check_silver, build_gold_*: ``athena:StartQueryExecution``, ``athena:GetQueryExecution``,
  ``athena:GetQueryResults`` on the workgroup, ``glue:GetTable(s)``, ``glue:CreateTable``,
  ``glue:DeleteTable``, ``glue:GetPartition(s)``, ``glue:CreatePartition``,
  ``glue:UpdatePartition``, ``glue:DeletePartition`` on the database, and S3 read and write on
  ``silver/*``, ``gold/*``, ``metrics/*`` and ``athena-results/*``;
* refresh_dashboards: ``quicksight:CreateIngestion``, ``quicksight:DescribeIngestion`` on the
  datasets, ``sts:GetCallerIdentity``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, timedelta
from typing import Any

from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.operators.glue_crawler import GlueCrawlerRunOperator
from airflow.providers.amazon.aws.operators.quicksight import QuickSightCreateIngestionOperator
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from lakehouse.jobs import GLUE_SCRIPT, glue_job_arguments, gold_asset
from lakehouse.params import GoldParameters, ParameterError, resolve_event_date
from lakehouse.settings import GOLD_TABLES, Lake, Settings
from lakehouse.targets.stream_aws import AwsStreamSteps

DAY = "{{ lakehouse_event_date() }}"
BUCKET = "{{ lakehouse_settings().bucket }}"
CONN = "{{ lakehouse_settings().aws_conn_id }}"
# Named after the folders, so the crawlers' tables are raw_events and silver_events.
CRAWLED_TABLES = {"raw": ("landing/events/", "raw_"), "silver": ("silver/events/", "silver_")}


def _event_date(context: Any) -> date:
    try:
        return resolve_event_date(context)
    except ParameterError as error:
        raise AirflowFailException(str(error)) from error


def landing_key_pattern(day: str) -> str:
    """Return the sensor's key pattern for one day's files; ``check_landing_objects`` anchors it."""
    return f"landing/events/event_date={day}/*.csv*"


def is_day_file(key: str, day: str) -> bool:
    """Tell whether a key is a raw file directly in the day's folder, not a nested one."""
    prefix = f"landing/events/event_date={day}/"
    name = key[len(prefix) :] if key.startswith(prefix) else ""
    return bool(re.fullmatch(r"[^/]+\.csv(\.gz)?", name)) and not name.startswith((".", "_"))


def check_landing_objects(files: list[dict[str, Any]], **context: Any) -> bool:
    """Check the sensor's matches: the day's own files, non-empty, with the expected header.

    Only the first 64 KiB of each object is read. Returns False to keep waiting when no file of
    the day itself matched; raises ``AirflowFailException`` on an empty or misnamed file.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from lakehouse.landing import HEADER_PROBE_BYTES, LandingError, check_header, check_name

    settings = Settings.from_env()
    day = _event_date(context).isoformat()
    keys = [f for f in files if is_day_file(f["Key"], day)]
    if not keys:
        return False
    hook = S3Hook(aws_conn_id=settings.aws_conn_id)
    for item in keys:
        name = f"s3://{settings.bucket}/{item['Key']}"
        if not item.get("Size"):
            raise AirflowFailException(f"{name}: file is empty")
        # NOTE: only the first bytes are read, so a truncated gzip passes here and fails in the
        # Glue job, whose error names the landing folder.
        body = hook.get_key(item["Key"], settings.bucket).get(Range=f"bytes=0-{HEADER_PROBE_BYTES - 1}")
        try:
            check_name(item["Key"].rsplit("/", 1)[-1])
            check_header(body["Body"].read(), name)
        except LandingError as error:
            raise AirflowFailException(str(error)) from error
    return True


class LandingKeySensor(S3KeySensor):
    """``S3KeySensor`` whose timeout names the day and the folder it waited for."""

    def _timeout_message(self, context: Any) -> str:
        settings = Settings.from_env()
        day = _event_date(context).isoformat()
        return (
            f"timed out after {self.timeout} s waiting for landing files of {day} under "
            f"s3://{settings.bucket}/landing/events/event_date={day}/; upload them, then run the day again"
        )

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(self._timeout_message(context)) from error

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as error:
            raise AirflowSensorTimeout(self._timeout_message(context)) from error


def crawler_config(table: str) -> dict[str, Any]:
    """Return the crawler's config: one S3 target, the table root, so a new column stays in it."""
    folder, prefix = CRAWLED_TABLES[table]
    return {
        "Name": f"{{{{ lakehouse_settings().glue_database }}}}_{table}_events",
        "Role": "{{ lakehouse_settings().glue_role }}",
        "DatabaseName": "{{ lakehouse_settings().glue_database }}",
        "TablePrefix": prefix,
        "Targets": {"S3Targets": [{"Path": f"s3://{BUCKET}/{folder}"}]},
        "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
        "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"},
        "Configuration": json.dumps(
            {
                "Version": 1.0,
                "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
                "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
            }
        ),
    }


class GlueCrawlerSyncRunOperator(GlueCrawlerRunOperator):
    """Create or update a Glue crawler from ``config``, then run it and wait.

    ``GlueCrawlerOperator`` did both and is deprecated in provider 9.34 in favour of the create,
    update and run operators. This class keeps the step one task, as on the local target. A
    crawler that is already running keeps its config for this crawl, and the run is waited for.
    """

    template_fields = (*GlueCrawlerRunOperator.template_fields, "config")

    def __init__(self, *, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(crawler_name=config["Name"], **kwargs)
        self.config = config

    def execute(self, context: Any) -> str:
        from botocore.exceptions import ClientError

        self.crawler_name = self.config["Name"]
        if self.hook.has_crawler(self.crawler_name):
            try:
                self.hook.update_crawler(**self.config)
            except ClientError as error:
                if error.response["Error"]["Code"] != "CrawlerRunningException":
                    raise
                self.log.warning("Crawler %s is running: waiting for that crawl", self.crawler_name)
        else:
            self.hook.create_crawler(**self.config)
            self.log.info("Created crawler %s", self.crawler_name)
        return super().execute(context)


def _run_athena(hook: Any, sql: str, settings: Settings) -> list[list[str | None]]:
    """Run one query in the workgroup, wait for it, and return the rows after the header."""
    query_id = hook.run_query(
        query=sql,
        query_context={"Database": settings.glue_database},
        result_configuration={"OutputLocation": settings.athena_output},
        workgroup=settings.athena_workgroup,
    )
    state = hook.poll_query_status(query_id)
    if state != "SUCCEEDED":
        reason = hook.get_state_change_reason(query_id)
        raise AirflowFailException(f"Athena query {query_id} ended {state}: {reason}")
    result = hook.get_query_results(query_id)
    rows = result["ResultSet"]["Rows"][1:]
    return [[cell.get("VarCharValue") for cell in row["Data"]] for row in rows]


class AwsSilverCheckOperator(BaseOperator):
    """Data-quality gate on Athena: the same rules as the local gate, measured in SQL.

    Rows in come from the crawled raw table, silver rows and rule violations from the silver
    table, and the quarantine and duplicate counts from the Glue job's metrics file.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.athena import AthenaHook
        from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from lakehouse.landing import EXPECTED_COLUMNS
        from lakehouse.quality import SilverProfile, evaluate, profile_sql

        settings = Settings.from_env()
        day = _event_date(context)
        athena = AthenaHook(aws_conn_id=settings.aws_conn_id)
        s3 = S3Hook(aws_conn_id=settings.aws_conn_id)
        catalog = GlueCatalogHook(aws_conn_id=settings.aws_conn_id)

        metrics_prefix = f"metrics/raw_to_silver/event_date={day.isoformat()}/"
        parts = [k for k in s3.list_keys(settings.bucket, prefix=metrics_prefix) if "/part-" in k]
        if not parts:
            raise AirflowFailException(
                f"metrics of the Glue job not found under s3://{settings.bucket}/{metrics_prefix}"
            )
        job = json.loads(s3.read_key(sorted(parts)[0], settings.bucket).strip())

        not_blank = " OR ".join(f"COALESCE(TRIM({c}), '') <> ''" for c in EXPECTED_COLUMNS)
        (raw,) = _run_athena(
            athena,
            f"SELECT COUNT(*) FROM raw_events WHERE event_date = '{day.isoformat()}' AND ({not_blank})",
            settings,
        )
        names = (
            "silver_rows",
            "unknown_event_types",
            "negative_prices",
            "null_required_values",
            "rows_outside_day",
            "repeated_event_ids",
        )
        (measured,) = _run_athena(athena, profile_sql("silver_events", day), settings)
        table = catalog.get_table(settings.glue_database, "silver_events")
        columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
        # The crawler types the partition column as string; its values are dates by construction.
        columns.update(
            {k["Name"]: "date" for k in table.get("PartitionKeys", []) if k["Name"] == "event_date"}
        )
        profile = SilverProfile(
            event_date=day.isoformat(),
            rows_in=int(raw[0] or 0),
            quarantined_rows=int(job["quarantined_rows"]),
            duplicates_dropped=int(job["duplicates_dropped"]),
            job_rows_in=int(job["rows_in"]),
            job_silver_rows=int(job["silver_rows"]),
            columns=columns,
            reject_reasons=job.get("reject_reasons", {}),
            **{name: int(value or 0) for name, value in zip(names, measured, strict=True)},
        )
        self.log.info("Data-quality counts: %s", profile.summary())
        failures = evaluate(profile)
        if failures:
            raise AirflowFailException(
                f"data-quality gate failed for {day} ({profile.summary()}): " + "; ".join(failures)
            )
        return profile.__dict__


class DashboardIngestionOperator(QuickSightCreateIngestionOperator):
    """SPICE ingestion of one dataset, with a clear error when one is already running.

    QuickSight refuses a second concurrent ingestion of a dataset. The task then fails with a
    retryable error, so that its retry starts an ingestion that includes the new gold data.
    The wait is bounded by the task's ``execution_timeout``.
    """

    _ALREADY_RUNNING = ("LimitExceededException", "ResourceExistsException", "ConcurrentUpdatingException")

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowException
        from botocore.exceptions import ClientError

        self.log.info("SPICE ingestion %s of QuickSight dataset %s", self.ingestion_id, self.data_set_id)
        try:
            return super().execute(context)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in self._ALREADY_RUNNING:
                raise
            raise AirflowException(
                f"QuickSight rejected ingestion {self.ingestion_id}: an ingestion of dataset "
                f"{self.data_set_id} is already running ({code}). The task retries after its retry "
                "delay, so the dataset is refreshed with this run's gold tables."
            ) from error


def stage_token(context: Any, day: date) -> str:
    """Return a staging name unique per run and try, and the same when a deferred task resumes."""
    digest = hashlib.sha256(context["run_id"].encode()).hexdigest()[:10]
    return f"{day.isoformat().replace('-', '')}_{digest}_try{context['ti'].try_number}"


class AthenaCtasOperator(AthenaOperator):
    """Run one gold SQL file as an Athena CTAS, then publish its partitions as the gold table's.

    Athena's CTAS needs an empty location, and ``DROP TABLE`` leaves the S3 objects behind. So
    each try writes to its own staging location, and the publication points each event_date
    partition of ``gold.<table>`` at the new files, deletes the files it replaced, and drops the
    staging table. A rerun of a day therefore ends with exactly one copy of its data.
    """

    def __init__(self, *, table: str, **kwargs: Any) -> None:
        kwargs.setdefault("query", f"-- {table}: rendered when the task runs")
        kwargs.setdefault("workgroup", "{{ lakehouse_settings().athena_workgroup }}")
        kwargs.setdefault("database", "{{ lakehouse_settings().glue_database }}")
        kwargs.setdefault("output_location", "{{ lakehouse_settings().athena_output }}")
        super().__init__(**kwargs)
        self.table = table

    def _prepare(self, context: Any) -> tuple[Settings, GoldParameters, str]:
        from lakehouse.gold import render_sql

        settings = Settings.from_env()
        try:
            parameters = GoldParameters.from_context(context)
        except ParameterError as error:
            raise AirflowFailException(str(error)) from error
        token = stage_token(context, parameters.event_date)
        self.query = render_sql(
            settings.sql_dir,
            self.table,
            parameters,
            ctas_table=f"{settings.glue_database}.{self.table}__stage_{token}",
            ctas_location=settings.lake.gold_run(self.table, token) + "/",
            silver_table=f"{settings.glue_database}.silver_events",
        )
        return settings, parameters, token

    def execute(self, context: Any) -> str:
        settings, parameters, token = self._prepare(context)
        self.log.info("CTAS of %s into staging %s", self.table, settings.lake.gold_run(self.table, token))
        query_id = super().execute(context)
        self._publish(settings, parameters, token)
        return query_id

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        query_id = super().execute_complete(context, event)
        settings, parameters, token = self._prepare(context)
        self._publish(settings, parameters, token)
        return query_id

    def _publish(self, settings: Settings, parameters: GoldParameters, token: str) -> None:
        from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        glue = GlueCatalogHook(aws_conn_id=settings.aws_conn_id).get_conn()
        s3 = S3Hook(aws_conn_id=settings.aws_conn_id)
        database = settings.glue_database
        stage_table = f"{self.table}__stage_{token}"
        staging = settings.lake.gold_run(self.table, token)
        gold_root = settings.lake.gold_table(self.table)

        stage = glue.get_table(DatabaseName=database, Name=stage_table)["Table"]
        try:
            glue.get_table(DatabaseName=database, Name=self.table)
        except glue.exceptions.EntityNotFoundException:
            descriptor = dict(stage["StorageDescriptor"], Location=gold_root + "/")
            glue.create_table(
                DatabaseName=database,
                TableInput={
                    "Name": self.table,
                    "TableType": "EXTERNAL_TABLE",
                    "Parameters": {"classification": "parquet"},
                    "StorageDescriptor": descriptor,
                    "PartitionKeys": stage["PartitionKeys"],
                },
            )
            self.log.info("Created table %s.%s at %s/", database, self.table, gold_root)

        first, last = parameters.output_dates(self.table)
        produced = {
            p["Values"][0]: p["StorageDescriptor"]
            for p in glue.get_partitions(DatabaseName=database, TableName=stage_table).get("Partitions", [])
        }
        day = first
        while day <= last:
            value = day.isoformat()
            try:
                old = glue.get_partition(DatabaseName=database, TableName=self.table, PartitionValues=[value])
                old_location = old["Partition"]["StorageDescriptor"]["Location"]
            except glue.exceptions.EntityNotFoundException:
                old_location = None
            if value in produced:
                partition = {"Values": [value], "StorageDescriptor": produced[value]}
                if old_location:
                    glue.update_partition(
                        DatabaseName=database,
                        TableName=self.table,
                        PartitionValueList=[value],
                        PartitionInput=partition,
                    )
                else:
                    glue.create_partition(
                        DatabaseName=database, TableName=self.table, PartitionInput=partition
                    )
                self.log.info(
                    "Published %s event_date=%s at %s", self.table, value, produced[value]["Location"]
                )
            elif old_location:
                glue.delete_partition(DatabaseName=database, TableName=self.table, PartitionValues=[value])
                self.log.info(
                    "Removed %s event_date=%s: the query produced no rows for it", self.table, value
                )
            if old_location and old_location.rstrip("/") != produced.get(value, {}).get(
                "Location", ""
            ).rstrip("/"):
                _delete_prefix(s3, old_location)
            day += timedelta(days=1)
        glue.delete_table(DatabaseName=database, Name=stage_table)
        self.log.info(
            "Dropped staging table %s.%s; its files under %s are now the partitions",
            database,
            stage_table,
            staging,
        )


def _delete_prefix(s3: Any, location: str) -> None:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    keys = s3.list_keys(bucket, prefix=prefix.rstrip("/") + "/")
    if keys:
        s3.delete_objects(bucket, keys)


class AwsTarget(AwsStreamSteps):
    """Builds each step of the batch DAG from the Amazon provider's operators."""

    name = "aws"

    def check_landing(self, task_id: str) -> BaseOperator:
        settings = Settings.from_env()
        return LandingKeySensor(
            task_id=task_id,
            bucket_name=BUCKET,
            bucket_key=landing_key_pattern(DAY),
            wildcard_match=True,
            check_fn=check_landing_objects,
            deferrable=True,
            poke_interval=settings.landing_poke_seconds,
            timeout=settings.landing_timeout_seconds,
            aws_conn_id=CONN,
        )

    def crawl(self, task_id: str, table: str) -> BaseOperator:
        return GlueCrawlerSyncRunOperator(
            task_id=task_id,
            config=crawler_config(table),
            wait_for_completion=True,
            deferrable=True,
            fail_on_already_running=False,
            aws_conn_id=CONN,
        )

    def transform_to_silver(self, task_id: str) -> BaseOperator:
        # Worker settings must be numbers in the API call, and a template renders a string, so
        # they are read from the environment when the DAG is parsed.
        settings = Settings.from_env()
        lake = Lake(f"s3://{BUCKET}")
        arguments = glue_job_arguments(lake, DAY)
        return GlueJobOperator(
            task_id=task_id,
            job_name="{{ lakehouse_settings().glue_job_name }}",
            job_desc="eCommerce events: one day from landing CSV to silver Parquet",
            script_location=str(settings.glue_scripts_dir / GLUE_SCRIPT),
            s3_bucket=BUCKET,
            iam_role_name="{{ lakehouse_settings().glue_role }}",
            script_args=arguments,
            create_job_kwargs={
                "GlueVersion": "5.1",
                "WorkerType": settings.glue_worker_type,
                "NumberOfWorkers": settings.glue_workers,
                "DefaultArguments": {"--enable-metrics": "true", "--job-language": "python"},
            },
            replace_script_file=True,
            update_config=True,
            deferrable=True,
            resume_glue_job_on_retry=True,
            stop_job_run_on_kill=True,
            aws_conn_id=CONN,
        )

    def check_silver(self, task_id: str) -> BaseOperator:
        return AwsSilverCheckOperator(task_id=task_id)

    def build_gold(self, task_id: str, table: str) -> BaseOperator:
        return AthenaCtasOperator(
            task_id=task_id,
            table=table,
            deferrable=True,
            aws_conn_id=CONN,
            outlets=[gold_asset(table)],
        )

    def refresh_dashboards(self, task_id: str) -> Any:
        prefix = "{{ lakehouse_settings().quicksight_dataset_prefix }}"
        return DashboardIngestionOperator.partial(
            task_id=task_id,
            ingestion_type="FULL_REFRESH",
            wait_for_completion=True,
            check_interval=30,
            execution_timeout=timedelta(hours=1),
            aws_conn_id=CONN,
        ).expand_kwargs(
            [
                {
                    "data_set_id": f"{prefix}{table}",
                    "ingestion_id": f"{{{{ lakehouse_ingestion_id('{table}') }}}}",
                }
                for table in GOLD_TABLES
            ]
        )
