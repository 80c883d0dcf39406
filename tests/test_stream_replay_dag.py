"""The streaming replay DAG with ``dag.test()`` on the local target, against moto on 127.0.0.1.

The expected counts come from reading the shipped CSV in the test with the csv module, and the
stream is read back here with a plain boto3 client, apart from the DAG's own reconcile task.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import boto3
import pytest
from conftest import PROJECT_ROOT, SAMPLE_OCT

from lakehouse.landing import land_file

DAG_FILE = PROJECT_ROOT / "dags" / "ecommerce_stream_replay.py"
STREAM = "replay-test"
pytestmark = pytest.mark.e2e


def load_dag():
    spec = importlib.util.spec_from_file_location("stream_dag_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_replay(conf: dict):
    dag_run = load_dag().test(run_conf={"stream_name": STREAM, "speedup": 0, **conf})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return dag_run, states


def xcom(dag_run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(
        run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value"
    )
    with create_session() as session:
        row = session.scalars(query).first()
        assert row is not None, f"no XCom of {task_id}"
        return XComModel.deserialize_value(row)


def sample_rows(start: str | None = None, end: str | None = None) -> list[tuple[str, ...]]:
    """The whole rows of the shipped sample (nine fields), optionally within [start, end)."""
    with SAMPLE_OCT.open(newline="") as stream:
        rows = [tuple(r) for r in csv.reader(stream)][1:]
    rows = [r for r in rows if len(r) == 9]
    if start is not None:
        rows = [r for r in rows if start <= r[0][:19] < end]
    return rows


def read_shards(lake: Path) -> dict[str, list[dict]]:
    """Read every record of the test stream from TRIM_HORIZON, per shard, with plain boto3."""
    endpoint = json.loads((lake / "kinesis" / "endpoint.json").read_text())
    assert endpoint["host"] == "127.0.0.1"
    client = boto3.client(
        "kinesis",
        endpoint_url=f"http://127.0.0.1:{endpoint['port']}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    shards: dict[str, list[dict]] = {}
    for shard in client.list_shards(StreamName=STREAM)["Shards"]:
        payloads = shards.setdefault(shard["ShardId"], [])
        iterator = client.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            payloads.extend(json.loads(r["Data"]) for r in response["Records"])
            if not response["Records"]:
                break
            iterator = response["NextShardIterator"]
    return shards


def read_whole_stream(lake: Path) -> list[dict]:
    return [payload for payloads in read_shards(lake).values() for payload in payloads]


@pytest.fixture
def replay_lake(lake, airflow_db, monkeypatch):
    """A lake with the Oct sample landed; stops the endpoint the DAG starts in it."""
    from lakehouse.kinesis_local import stop_endpoint

    monkeypatch.setenv("LAKEHOUSE_STREAM_SHARDS", "2")
    land_file(SAMPLE_OCT, lake)
    yield lake
    stop_endpoint(lake / "kinesis")


def test_sample_day_replayed_and_reconciled(replay_lake):
    dag_run, states = run_replay({"start": "2019-10-01", "end": "2019-10-01"})
    assert str(dag_run.state) == "success", states
    assert states == {
        "ensure_stream": "success",
        "start_analytics_app": "skipped",
        "replay_events": "success",
        "reconcile": "success",
    }
    rows = sample_rows()
    # 17,434 whole rows, 5 of them exact repeats of another row.
    assert len(rows) == 17434
    assert len(set(rows)) == 17429

    sent = xcom(dag_run, "replay_events")
    assert sent["sent"] == len(rows)
    assert sent["sources"] == {"2019-10-01": "landing"}
    assert sent["skipped_rows"] == 1  # the cut-off last row

    report = xcom(dag_run, "reconcile")
    assert report["expected_records"] == len(rows)
    assert report["received_records"] == len(rows)
    assert report["received_ids"] == len(set(rows))
    assert report["lost"] == 0
    assert report["duplicates"] == len(rows) - len(set(rows))
    assert report["unexpected_records"] == 0

    shards = read_shards(replay_lake)
    assert len(shards) == 2
    stream = [payload for payloads in shards.values() for payload in payloads]
    as_rows = Counter(
        (
            p["event_time"].replace("T", " ").replace("Z", " UTC"),
            p["event_type"],
            str(p["product_id"]),
            p["user_session"] or "",
        )
        for p in stream
    )
    assert as_rows == Counter((r[0], r[1], r[2], r[8]) for r in rows)
    for shard_id, payloads in shards.items():
        times = [p["event_time"] for p in payloads]
        assert times == sorted(times), f"{shard_id} is not in event-time order"


def test_time_window_and_max_events(replay_lake):
    conf = {"start": "2019-10-01 02:30:00", "end": "2019-10-01T02:40:00Z", "max_events": 250}
    dag_run, states = run_replay(conf)
    assert str(dag_run.state) == "success", states
    window = sorted(sample_rows("2019-10-01 02:30:00", "2019-10-01 02:40:00"), key=lambda r: r[0])
    assert len(window) > 250
    sent = xcom(dag_run, "replay_events")
    assert sent["sent"] == 250
    stream = read_whole_stream(replay_lake)
    assert len(stream) == 250
    times = sorted(p["event_time"] for p in stream)
    # The earliest 250 events of the window: ties at the last second are broken by event id.
    assert times[0] == window[0][0][:10] + "T" + window[0][0][11:19] + "Z"
    assert times[-1] == window[249][0][:10] + "T" + window[249][0][11:19] + "Z"
    report = xcom(dag_run, "reconcile")
    assert (report["expected_records"], report["received_records"], report["lost"]) == (250, 250, 0)


def test_second_run_reuses_endpoint(replay_lake):
    """A second run into the same stream reuses the server; reconcile counts only its own records."""
    first, states = run_replay({"start": "2019-10-01 00:00", "end": "2019-10-01 00:05"})
    assert str(first.state) == "success", states
    endpoint = json.loads((replay_lake / "kinesis" / "endpoint.json").read_text())
    second, states = run_replay({"start": "2019-10-01 00:00", "end": "2019-10-01 00:05"})
    assert str(second.state) == "success", states
    assert json.loads((replay_lake / "kinesis" / "endpoint.json").read_text()) == endpoint
    expected = len(sample_rows("2019-10-01 00:00:00", "2019-10-01 00:05:00"))
    report = xcom(second, "reconcile")
    assert report["received_records"] == expected
    assert report["unexpected_records"] == 0
    assert len(read_whole_stream(replay_lake)) == 2 * expected
    checkpoints = sorted(
        p.parent.name for p in (replay_lake / "replay" / "checkpoints" / STREAM).glob("*/*.json")
    )
    assert len(checkpoints) == 2


def test_empty_range_fails_clearly(replay_lake):
    dag_run, states = run_replay({"start": "2019-10-05", "end": "2019-10-05"})
    assert str(dag_run.state) == "failed"
    assert states["ensure_stream"] == "success"
    assert states["replay_events"] == "failed"
    assert states["reconcile"] == "upstream_failed"


@pytest.mark.parametrize(
    "conf",
    [
        {"speedup": -1},
        {"speedup": 3601},
        {"max_events": 0},
        {"stream_name": "no spaces allowed"},
        {"start": "yesterday"},
        {"start": "2019-10-01T00:00:00+02:00"},
    ],
)
def test_invalid_params_rejected_before_sending(lake, airflow_db, conf):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        load_dag().test(run_conf={"start": "2019-10-01", "end": "2019-10-01", **conf})
    assert not (lake / "kinesis").exists()


def test_invalid_range_fails_in_first_task(lake, airflow_db):
    """End before start passes each field's schema, so the tasks' own validation rejects it."""
    dag_run = load_dag().test(run_conf={"start": "2019-10-02", "end": "2019-10-01"})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["ensure_stream"] == "failed"
    assert states["replay_events"] == "upstream_failed"
    assert not (lake / "kinesis").exists()


# --- the aws target, against moto's server on 127.0.0.1 -------------------------------------------

BUCKET = "replay-test-lake"


@pytest.fixture
def aws_lake(lake, airflow_db, monkeypatch):
    """The aws target pointed at a moto server, with the Oct sample landed in its bucket."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        monkeypatch.setenv("LAKEHOUSE_TARGET", "aws")
        monkeypatch.setenv("LAKEHOUSE_BUCKET", BUCKET)
        monkeypatch.setenv("LAKEHOUSE_STREAM_SHARDS", "2")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}),
        )
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        report = land_file(SAMPLE_OCT, lake)
        for path in report.files:
            key = Path(path).relative_to(lake).as_posix()
            s3.upload_file(path, BUCKET, key)
        kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
        yield {"s3": s3, "kinesis": kinesis}
    finally:
        server.stop()


def test_aws_target_replays_from_bucket(aws_lake):
    conf = {"start": "2019-10-01 00:00", "end": "2019-10-01 01:00"}
    dag_run, states = run_replay(conf)
    assert str(dag_run.state) == "success", states
    assert states["start_analytics_app"] == "skipped"
    expected = sample_rows("2019-10-01 00:00:00", "2019-10-01 01:00:00")
    sent = xcom(dag_run, "replay_events")
    assert sent["sent"] == len(expected)
    assert sent["sources"] == {"2019-10-01": "landing"}
    report = xcom(dag_run, "reconcile")
    assert (report["received_records"], report["lost"]) == (len(expected), 0)

    kinesis = aws_lake["kinesis"]
    summary = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    keys = [
        o["Key"]
        for o in aws_lake["s3"].list_objects_v2(Bucket=BUCKET, Prefix="replay/checkpoints/")["Contents"]
    ]
    assert len(keys) == 1
    assert keys[0].startswith(f"replay/checkpoints/{STREAM}/manual__")
    state = json.loads(aws_lake["s3"].get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    assert state["complete"] is True
    assert state["sent"] == len(expected)


def test_flink_step_skips_or_reuses_running_app(monkeypatch):
    """DescribeApplication and StartApplication are mocked here, not sent to moto's server."""
    from unittest import mock

    from airflow.sdk.exceptions import AirflowSkipException

    from lakehouse.targets.stream_aws import AwsStartAnalyticsAppOperator

    unset = AwsStartAnalyticsAppOperator(task_id="start_analytics_app", application_name="")
    with pytest.raises(AirflowSkipException, match="LAKEHOUSE_FLINK_APPLICATION"):
        unset.execute({})

    running = AwsStartAnalyticsAppOperator(task_id="start_analytics_app", application_name="clicks")
    conn = mock.Mock()
    conn.describe_application.return_value = {
        "ApplicationDetail": {
            "ApplicationStatus": "RUNNING",
            "ApplicationARN": "arn:aws:kinesisanalytics:app",
        }
    }
    with mock.patch.object(type(running), "hook", new_callable=mock.PropertyMock) as hook:
        hook.return_value.conn = conn
        assert running.execute({}) == {"ApplicationARN": "arn:aws:kinesisanalytics:app"}
    conn.start_application.assert_not_called()

    ready = AwsStartAnalyticsAppOperator(task_id="start_analytics_app", application_name="clicks")
    conn.describe_application.return_value = {
        "ApplicationDetail": {"ApplicationStatus": "READY", "ApplicationARN": "arn:aws:kinesisanalytics:app"}
    }
    with (
        mock.patch.object(type(ready), "hook", new_callable=mock.PropertyMock) as hook,
        mock.patch(
            "airflow.providers.amazon.aws.operators.kinesis_analytics."
            "KinesisAnalyticsV2StartApplicationOperator.execute",
            return_value={"ApplicationARN": "started"},
        ) as start,
    ):
        hook.return_value.conn = conn
        assert ready.execute({}) == {"ApplicationARN": "started"}
    start.assert_called_once()


@pytest.mark.spark
def test_silver_day_replayed_after_batch_dag(replay_lake):
    """After the batch DAG, the day is replayed from silver: one record per distinct row."""
    import pyarrow.parquet as pq

    batch_spec = importlib.util.spec_from_file_location(
        "batch_dag_for_replay", PROJECT_ROOT / "dags" / "ecommerce_batch_lakehouse.py"
    )
    batch_module = importlib.util.module_from_spec(batch_spec)
    batch_spec.loader.exec_module(batch_module)
    batch_run = batch_module.dag.test(run_conf={"event_date": "2019-10-01"})
    assert str(batch_run.state) == "success"

    dag_run, states = run_replay({"start": "2019-10-01", "end": "2019-10-01"})
    assert str(dag_run.state) == "success", states
    distinct_rows = len(set(sample_rows()))
    sent = xcom(dag_run, "replay_events")
    assert sent["sources"] == {"2019-10-01": "silver"}
    assert sent["sent"] == distinct_rows
    report = xcom(dag_run, "reconcile")
    assert report["received_ids"] == distinct_rows
    assert report["duplicates"] == 0
    assert report["lost"] == 0

    silver = pq.read_table(replay_lake / "silver" / "events" / "event_date=2019-10-01", columns=["event_id"])
    assert sorted(p["event_id"] for p in read_whole_stream(replay_lake)) == sorted(
        silver.column("event_id").to_pylist()
    )
