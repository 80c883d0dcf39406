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

from lakehouse.settings import Settings
from lakehouse.targets.stream import ReconcileOperator, ReplayOperator, replay_parameters, stream_name


class LocalEnsureStreamOperator(BaseOperator):
    """Start or reuse the local Kinesis endpoint, then create the stream when it is missing."""

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.kinesis_local import EndpointError, ensure_endpoint, kinesis_client
        from lakehouse.replay import ensure_stream

        settings = Settings.from_env()
        name = stream_name(settings, replay_parameters(context))
        folder = Path(settings.lake.kinesis_local_dir)
        try:
            endpoint, started = ensure_endpoint(folder, settings.kinesis_local_port)
        except EndpointError as error:
            # A taken port or a server that does not start: a retry would fail the same way.
            raise AirflowFailException(str(error)) from error
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


class _LocalLake:
    """The local lake and the endpoint recorded in it by ``ensure_stream``."""

    def lake_files(self, settings: Settings) -> Any:
        from lakehouse.replay import LocalLakeFiles

        return LocalLakeFiles(settings.local_root)

    def kinesis_client(self, settings: Settings) -> Any:
        from lakehouse.kinesis_local import EndpointError, find_endpoint, kinesis_client

        try:
            endpoint = find_endpoint(Path(settings.lake.kinesis_local_dir))
        except EndpointError as error:
            raise AirflowFailException(str(error)) from error
        return kinesis_client(endpoint)

    def lake_location(self, settings: Settings) -> str:
        return str(settings.local_root)


class LocalReplayOperator(_LocalLake, ReplayOperator):
    """Replay the range's events from the local lake into the local stream."""

    def checkpoint(self, settings: Settings, key: str) -> Any:
        from lakehouse.replay import LocalCheckpoint

        return LocalCheckpoint(Path(settings.lake.replay_checkpoints) / key)


class LocalReconcileOperator(_LocalLake, ReconcileOperator):
    """Read the local stream back and check that every event the replay sent arrived."""


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
