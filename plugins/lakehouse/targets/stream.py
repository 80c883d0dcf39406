"""The replay and reconcile steps of the streaming replay DAG, shared by both targets.

A target's subclass supplies the lake's files, the Kinesis client and the checkpoint. Everything else, from validating the parameters to failing with counts, is the same code.
"""

from __future__ import annotations

import itertools
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from lakehouse.params import ParameterError, ReplayParameters
from lakehouse.settings import Settings

REPLAY_TASK_ID = "replay_events"


def replay_parameters(context: Any) -> ReplayParameters:
    """Validate the run's parameters again, with the rules a JSON schema cannot state.

    The schemas check each field alone. Only here is the end checked to be after the start and
    at most 31 days later.
    """
    try:
        return ReplayParameters.from_context(context)
    except ParameterError as error:
        raise AirflowFailException(str(error)) from error


def stream_name(settings: Settings, parameters: ReplayParameters) -> str:
    return parameters.stream_name or settings.stream_name


class StreamStep(BaseOperator):
    """Base of the replay and reconcile steps: where the lake and the stream are on a target."""

    def lake_files(self, settings: Settings) -> Any:
        """Return the ``lakehouse.replay.LakeFiles`` to read the events from."""
        raise NotImplementedError

    def kinesis_client(self, settings: Settings) -> Any:
        """Return a boto3 Kinesis client for the target's stream endpoint."""
        raise NotImplementedError

    def lake_location(self, settings: Settings) -> str:
        """Return where the lake is, for log lines and error messages."""
        raise NotImplementedError


class ReplayOperator(StreamStep):
    """Replay the range's events from the lake into the stream, resuming a checkpoint."""

    def checkpoint(self, settings: Settings, key: str) -> Any:
        """Return the ``lakehouse.replay.CheckpointStore`` for the replay's checkpoint ``key``."""
        raise NotImplementedError

    def execute(self, context: Any) -> dict[str, Any]:
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
        files = self.lake_files(settings)
        client = self.kinesis_client(settings)
        key = checkpoint_key(name, context["run_id"], parameters.start, parameters.end)
        stats = SourceStats()
        self.log.info(
            "Replaying %s to %s from %s into stream %s (speed-up %s, at most %d events), run %s",
            parameters.start.isoformat(),
            parameters.end.isoformat(),
            self.lake_location(settings),
            name,
            parameters.speedup,
            parameters.max_events,
            context["run_id"],
        )
        try:
            result = replay(
                read_events(files, parameters.start, parameters.end, stats),
                client,
                stream_name=name,
                run_id=context["run_id"],
                start=parameters.start,
                end=parameters.end,
                speedup=parameters.speedup,
                max_events=parameters.max_events,
                checkpoint=self.checkpoint(settings, key),
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
                f"in {self.lake_location(settings)} (sources per day: {result.sources}); "
                "land or transform those days first"
            )
        return result.as_dict()


class ReconcileOperator(StreamStep):
    """Read the stream back from the replay's first sequence numbers and compare event ids.

    :param replay_task_id: the task whose result (XCom) records what was sent and the first
        sequence number on each shard.
    """

    def __init__(self, *, replay_task_id: str = REPLAY_TASK_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.replay_task_id = replay_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from lakehouse.replay import read_events, read_stream, reconcile

        settings = Settings.from_env()
        parameters = replay_parameters(context)
        sent = context["ti"].xcom_pull(task_ids=self.replay_task_id)
        if not sent:
            raise AirflowFailException(f"no result of {self.replay_task_id} in this run to reconcile")
        files = self.lake_files(settings)
        client = self.kinesis_client(settings)
        # The replay sent the first `sent` events of the range in this same order.
        expected = itertools.islice(read_events(files, parameters.start, parameters.end), sent["sent"])
        received = read_stream(client, sent["stream_name"], sent["first_sequence"])
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
