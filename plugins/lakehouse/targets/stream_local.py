"""The ``local`` target's steps of the streaming replay DAG, against moto's Kinesis on 127.0.0.1.

``ensure_stream`` starts the endpoint, or reuses the one recorded in the lake, and creates the
stream. ``replay_events`` and ``reconcile`` find the endpoint through the same record, so each
task may run in its own process. The producer is ``lakehouse.replay``, the same on AWS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from lakehouse.params import ParameterError, ReplayParameters
from lakehouse.settings import Settings

REPLAY_TASK_ID = "replay_events"


def replay_parameters(context: Any) -> ReplayParameters:
    """Validate the run's parameters again, with the rules a JSON schema cannot state.

    The schemas check each field alone; only here is the end checked to be after the start and
    at most 31 days later.
    """
    try:
        return ReplayParameters.from_context(context)
    except ParameterError as error:
        raise AirflowFailException(str(error)) from error


def stream_name(settings: Settings, parameters: ReplayParameters) -> str:
    return parameters.stream_name or settings.stream_name


class LocalEnsureStreamOperator(BaseOperator):
    """Start or reuse the local Kinesis endpoint, then create the stream when it is missing."""

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.kinesis_local import ensure_endpoint, kinesis_client
        from lakehouse.replay import ensure_stream

        settings = Settings.from_env()
        name = stream_name(settings, replay_parameters(context))
        folder = Path(settings.lake.kinesis_local_dir)
        endpoint, started = ensure_endpoint(folder, settings.kinesis_local_port)
        self.log.info(
            "%s the local Kinesis endpoint %s (pid %d, recorded in %s)",
            "Started" if started else "Reusing",
            endpoint.url,
            endpoint.pid,
            folder,
        )
        info = ensure_stream(
            kinesis_client(endpoint), name, settings.stream_shards, poll_seconds=0.2, log=self.log
        )
        return {**info, "endpoint": endpoint.url}


class LocalSkipAnalyticsAppOperator(BaseOperator):
    """Skip: there is no Managed Service for Apache Flink on this machine."""

    def execute(self, context: Any) -> None:
        raise AirflowSkipException(
            "the local target has no Managed Service for Apache Flink application to start; "
            "consumers read the local stream directly"
        )


class LocalReplayOperator(BaseOperator):
    """Replay the range's events from the local lake into the local stream, resuming a checkpoint."""

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.kinesis_local import EndpointError, find_endpoint, kinesis_client
        from lakehouse.replay import (
            DeliveryError,
            LocalCheckpoint,
            LocalLakeFiles,
            ReplayError,
            SourceStats,
            checkpoint_key,
            read_events,
            replay,
        )

        settings = Settings.from_env()
        parameters = replay_parameters(context)
        name = stream_name(settings, parameters)
        try:
            endpoint = find_endpoint(Path(settings.lake.kinesis_local_dir))
        except EndpointError as error:
            raise AirflowFailException(str(error)) from error
        key = checkpoint_key(name, context["run_id"], parameters.start, parameters.end)
        checkpoint = LocalCheckpoint(Path(settings.lake.replay_checkpoints) / key)
        stats = SourceStats()
        self.log.info(
            "Replaying %s to %s into stream %s at %s (speed-up %s, at most %d events), run %s",
            parameters.start.isoformat(),
            parameters.end.isoformat(),
            name,
            endpoint.url,
            parameters.speedup,
            parameters.max_events,
            context["run_id"],
        )
        try:
            result = replay(
                read_events(LocalLakeFiles(settings.local_root), parameters.start, parameters.end, stats),
                kinesis_client(endpoint),
                stream_name=name,
                run_id=context["run_id"],
                start=parameters.start,
                end=parameters.end,
                speedup=parameters.speedup,
                max_events=parameters.max_events,
                checkpoint=checkpoint,
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
                f"(sources per day: {result.sources}); land or transform those days first"
            )
        return result.as_dict()


class LocalReconcileOperator(BaseOperator):
    """Read the stream back and check that every event the replay sent arrived, by event id.

    :param replay_task_id: the task whose result (XCom) records what was sent and the
        first sequence number on each shard.
    """

    def __init__(self, *, replay_task_id: str = REPLAY_TASK_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replay_task_id = replay_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        import itertools

        from lakehouse.kinesis_local import EndpointError, find_endpoint, kinesis_client
        from lakehouse.replay import LocalLakeFiles, read_events, read_stream, reconcile

        settings = Settings.from_env()
        parameters = replay_parameters(context)
        sent = context["ti"].xcom_pull(task_ids=self.replay_task_id)
        if not sent:
            raise AirflowFailException(f"no result of {self.replay_task_id} in this run to reconcile")
        try:
            endpoint = find_endpoint(Path(settings.lake.kinesis_local_dir))
        except EndpointError as error:
            raise AirflowFailException(str(error)) from error
        expected = itertools.islice(
            read_events(LocalLakeFiles(settings.local_root), parameters.start, parameters.end), sent["sent"]
        )
        received = read_stream(kinesis_client(endpoint), sent["stream_name"], sent["first_sequence"])
        report = reconcile(expected, received)
        self.log.info(
            "Reconciled stream %s for run %s: %s", sent["stream_name"], context["run_id"], report.summary()
        )
        if report.lost:
            raise AirflowFailException(
                f"{report.lost} events sent to stream {sent['stream_name']} were not read back "
                f"({report.summary()}); first lost event ids: {', '.join(report.lost_sample)}"
            )
        return report.__dict__


class LocalStreamSteps:
    """Builds each step of the streaming replay DAG for the local target."""

    def ensure_stream(self, task_id: str) -> BaseOperator:
        return LocalEnsureStreamOperator(task_id=task_id)

    def start_analytics_app(self, task_id: str) -> BaseOperator:
        return LocalSkipAnalyticsAppOperator(task_id=task_id)

    def replay_events(self, task_id: str) -> BaseOperator:
        # The Flink step is skipped when no application is configured; that must not skip this.
        return LocalReplayOperator(task_id=task_id, trigger_rule="none_failed")

    def reconcile(self, task_id: str) -> BaseOperator:
        return LocalReconcileOperator(task_id=task_id)
