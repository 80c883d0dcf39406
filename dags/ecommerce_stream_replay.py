"""
### eCommerce stream replay

Replays recorded events of the lake into a Kinesis data stream, paced by their event time, so
that real-time consumers see realistic traffic. Triggered by hand:

1. `ensure_stream`: the stream exists and is ACTIVE (created on-demand, or with
   `LAKEHOUSE_STREAM_SHARDS` shards, when missing);
2. `start_analytics_app`: the Managed Service for Apache Flink application named by
   `LAKEHOUSE_FLINK_APPLICATION` is running; skipped when none is set, and on the local target;
3. `replay_events`: the events of `[start, end)` in event-time order, at most `max_events`,
   from silver Parquet or, for a day without silver, from its landing CSV files. Event-time gaps
   are divided by `speedup` (0: as fast as the stream accepts). A retried task resumes from its
   checkpoint;
4. `reconcile`: the stream is read back and every event sent is found by its `event_id`.

`LAKEHOUSE_TARGET` (`local` by default, or `aws`) picks how each step runs; the task ids and
their order are the same on both. Locally the stream lives in moto's server on 127.0.0.1.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, chain

from lakehouse.macros import MACROS
from lakehouse.params import REPLAY_PARAMS
from lakehouse.settings import Settings
from lakehouse.targets import load_target

DAG_ID = "ecommerce_stream_replay"

target = load_target()
settings = Settings.from_env()

with DAG(
    dag_id=DAG_ID,
    description="Replay recorded eCommerce events into a Kinesis stream, paced by event time",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2019, 10, 1, tz="UTC"),
    catchup=False,
    # Two replays into one stream would interleave their traffic and their read-back.
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        # The parameters allow at most 24 hours of pacing (a day at speed-up 1), so the timeout
        # ends only a replay that the stream holds back. Its retry resumes from the checkpoint.
        "execution_timeout": timedelta(hours=26),
    },
    params=REPLAY_PARAMS,
    user_defined_macros=MACROS,
    tags=["ecommerce", "lakehouse", "streaming"],
) as dag:
    ensure_stream = target.ensure_stream("ensure_stream")
    start_analytics_app = target.start_analytics_app("start_analytics_app")
    replay_events = target.replay_events("replay_events")
    reconcile = target.reconcile("reconcile")

    chain(ensure_stream, start_analytics_app, replay_events, reconcile)
