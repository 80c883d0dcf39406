"""The ``aws`` target's steps of the streaming replay DAG, with the Amazon provider's hooks.

The producer is ``lakehouse.replay``, the same code as on the local target. Here it gets its
Kinesis client from ``KinesisHook``, reads the lake from S3 and keeps its checkpoint in S3.
The Flink application starts with ``KinesisAnalyticsV2StartApplicationOperator``.

Required IAM permissions of the MWAA execution role, per step:

* ensure_stream: ``kinesis:DescribeStreamSummary``, ``kinesis:CreateStream`` on the stream;
* start_analytics_app: ``kinesisanalytics:DescribeApplication``,
  ``kinesisanalytics:StartApplication`` on the application;
* replay_events: ``kinesis:PutRecords`` on the stream, ``s3:ListBucket`` on the data bucket,
  ``s3:GetObject`` on ``silver/events/*`` and ``landing/events/*``, ``s3:GetObject`` and
  ``s3:PutObject`` on ``replay/checkpoints/*``;
* reconcile: ``kinesis:GetShardIterator``, ``kinesis:GetRecords`` on the stream, and the same
  S3 reads as replay_events.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from airflow.providers.amazon.aws.operators.kinesis_analytics import (
    KinesisAnalyticsV2StartApplicationOperator,
)
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from lakehouse.settings import Settings
from lakehouse.targets.stream import ReconcileOperator, ReplayOperator, replay_parameters, stream_name

CONN = "{{ lakehouse_settings().aws_conn_id }}"


@dataclass
class S3LakeFiles:
    """The lake in the data bucket, read through ``S3Hook``."""

    hook: Any
    bucket: str

    def list(self, folder: str) -> list[str]:
        keys = self.hook.list_keys(bucket_name=self.bucket, prefix=folder.rstrip("/") + "/", delimiter="/")
        return sorted(keys)

    def open(self, path: str) -> IO[bytes]:
        # Parquet needs a seekable file, so each object is copied to local disk, not to memory.
        # The caller closes it, which deletes it.
        local = tempfile.TemporaryFile(prefix="lakehouse-replay-")  # noqa: SIM115
        self.hook.get_key(path, self.bucket).download_fileobj(local)
        local.seek(0)
        return local


@dataclass
class S3Checkpoint:
    """A replay checkpoint as one small JSON object in the data bucket."""

    hook: Any
    bucket: str
    key: str

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def load(self) -> dict[str, Any] | None:
        if not self.hook.check_for_key(self.key, self.bucket):
            return None
        return json.loads(self.hook.read_key(self.key, self.bucket))

    def save(self, state: dict[str, Any]) -> None:
        self.hook.load_string(json.dumps(state, sort_keys=True), self.key, self.bucket, replace=True)


class AwsEnsureStreamOperator(BaseOperator):
    """Create the Kinesis stream when it is missing, on-demand or with the configured shards."""

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        from lakehouse.replay import ensure_stream

        settings = Settings.from_env()
        name = stream_name(settings, replay_parameters(context))
        client = KinesisHook(aws_conn_id=settings.aws_conn_id).conn
        return ensure_stream(client, name, settings.stream_shards, log=self.log)


class AwsStartAnalyticsAppOperator(KinesisAnalyticsV2StartApplicationOperator):
    """Start the configured Flink application; skip when none is configured or it already runs."""

    _RUNNING = ("STARTING", "RUNNING", "UPDATING", "AUTOSCALING")

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.application_name:
            raise AirflowSkipException(
                "no Managed Service for Apache Flink application configured (LAKEHOUSE_FLINK_APPLICATION)"
            )
        detail = self.hook.conn.describe_application(ApplicationName=self.application_name)[
            "ApplicationDetail"
        ]
        status = detail["ApplicationStatus"]
        if status in self._RUNNING:
            # StartApplication fails on a running application, and a retry of this run would too.
            self.log.info(
                "Flink application %s is already %s: not starting it", self.application_name, status
            )
            return {"ApplicationARN": detail["ApplicationARN"]}
        return super().execute(context)


class _BucketLake:
    """The lake in the data bucket and the stream, both through the provider's hooks."""

    def lake_files(self, settings: Settings) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3LakeFiles(S3Hook(aws_conn_id=settings.aws_conn_id), settings.bucket)

    def kinesis_client(self, settings: Settings) -> Any:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        return KinesisHook(aws_conn_id=settings.aws_conn_id).conn

    def lake_location(self, settings: Settings) -> str:
        return f"s3://{settings.bucket}"


class AwsReplayOperator(_BucketLake, ReplayOperator):
    """Replay the range's events from the data bucket into the stream, with an S3 checkpoint."""

    def checkpoint(self, settings: Settings, key: str) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Checkpoint(
            S3Hook(aws_conn_id=settings.aws_conn_id), settings.bucket, f"replay/checkpoints/{key}"
        )


class AwsReconcileOperator(_BucketLake, ReconcileOperator):
    """Read the stream back with GetRecords and compare event ids with the replay's.

    NOTE: GetRecords shares each shard's read throughput (5 calls and 2 MB per second) with the
    real consumers, and reading back a long replay takes long too.
    """


class AwsStreamSteps:
    """Builds each step of the streaming replay DAG from the Amazon provider's hooks and operators."""

    def ensure_stream(self, task_id: str) -> BaseOperator:
        return AwsEnsureStreamOperator(task_id=task_id)

    def start_analytics_app(self, task_id: str) -> BaseOperator:
        return AwsStartAnalyticsAppOperator(
            task_id=task_id,
            application_name="{{ lakehouse_settings().flink_application }}",
            wait_for_completion=True,
            waiter_delay=30,
            waiter_max_attempts=40,
            deferrable=True,
            aws_conn_id=CONN,
        )

    def replay_events(self, task_id: str) -> BaseOperator:
        # The Flink step is skipped when no application is configured; that must not skip this.
        return AwsReplayOperator(task_id=task_id, trigger_rule="none_failed")

    def reconcile(self, task_id: str) -> BaseOperator:
        return AwsReconcileOperator(task_id=task_id)
