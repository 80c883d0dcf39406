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
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from lakehouse.settings import Settings
from lakehouse.targets.stream_local import REPLAY_TASK_ID, replay_parameters, stream_name

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


class AwsReplayOperator(BaseOperator):
    """Replay the range's events from the data bucket into the stream, resuming an S3 checkpoint."""

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from lakehouse.replay import (
            DeliveryError,
            ReplayError,
            SourceStats,
            checkpoint_key,
            read_events,
            replay,
        )

        settings = Settings.from_env()
        parameters = replay_parameters(context)
        name = stream_name(settings, parameters)
        s3 = S3Hook(aws_conn_id=settings.aws_conn_id)
        key = "replay/checkpoints/" + checkpoint_key(
            name, context["run_id"], parameters.start, parameters.end
        )
        stats = SourceStats()
        self.log.info(
            "Replaying %s to %s from s3://%s into stream %s (speed-up %s, at most %d events), run %s",
            parameters.start.isoformat(),
            parameters.end.isoformat(),
            settings.bucket,
            name,
            parameters.speedup,
            parameters.max_events,
            context["run_id"],
        )
        try:
            result = replay(
                read_events(S3LakeFiles(s3, settings.bucket), parameters.start, parameters.end, stats),
                KinesisHook(aws_conn_id=settings.aws_conn_id).conn,
                stream_name=name,
                run_id=context["run_id"],
                start=parameters.start,
                end=parameters.end,
                speedup=parameters.speedup,
                max_events=parameters.max_events,
                checkpoint=S3Checkpoint(s3, settings.bucket, key),
                stats=stats,
                log_interval_seconds=settings.replay_log_interval_seconds,
                log=self.log,
            )
        except DeliveryError:
            # The checkpoint was written first, so Airflow's retry resumes after the last batch.
            raise
        except ReplayError as error:
            # A record over 1 MiB or another replay's checkpoint: a retry would fail the same way.
            raise AirflowFailException(str(error)) from error
        if result.sent == 0:
            raise AirflowFailException(
                f"no events to replay from {parameters.start.isoformat()} to {parameters.end.isoformat()} "
                f"in s3://{settings.bucket} (sources per day: {result.sources}); land or transform those days first"
            )
        return result.as_dict()


class AwsReconcileOperator(BaseOperator):
    """Read the stream back from the replay's first sequence numbers and compare event ids.

    NOTE: this reads with GetRecords, which shares each shard's read throughput (5 calls and
    2 MB per second) with the real consumers. Reading back a long replay takes long too.
    """

    def __init__(self, *, replay_task_id: str = REPLAY_TASK_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replay_task_id = replay_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        import itertools

        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from lakehouse.replay import read_events, read_stream, reconcile

        settings = Settings.from_env()
        parameters = replay_parameters(context)
        sent = context["ti"].xcom_pull(task_ids=self.replay_task_id)
        if not sent:
            raise AirflowFailException(f"no result of {self.replay_task_id} in this run to reconcile")
        files = S3LakeFiles(S3Hook(aws_conn_id=settings.aws_conn_id), settings.bucket)
        expected = itertools.islice(read_events(files, parameters.start, parameters.end), sent["sent"])
        client = KinesisHook(aws_conn_id=settings.aws_conn_id).conn
        report = reconcile(expected, read_stream(client, sent["stream_name"], sent["first_sequence"]))
        self.log.info(
            "Reconciled stream %s for run %s: %s", sent["stream_name"], context["run_id"], report.summary()
        )
        if report.lost:
            raise AirflowFailException(
                f"{report.lost} events sent to stream {sent['stream_name']} were not read back "
                f"({report.summary()}); first lost event ids: {', '.join(report.lost_sample)}"
            )
        return report.__dict__


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
