"""The replay producer: batching, retries, pacing, checkpoints and reading the lake.

Most tests drive ``lakehouse.replay`` with a fake Kinesis client and a fake clock, so the
expected batches, resends and wall-clock times are worked out by hand. The endpoint tests start
moto's server on 127.0.0.1 and stop it by its pid.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from conftest import PROJECT_ROOT

from lakehouse.params import ParameterError, ReplayParameters, parse_utc_timestamp
from lakehouse.replay import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    DeliveryError,
    DeliveryStats,
    Event,
    LocalCheckpoint,
    LocalLakeFiles,
    ReplayError,
    RetryPolicy,
    SourceStats,
    landing_event,
    make_event,
    put_batch,
    read_events,
    read_stream,
    reconcile,
    replay,
)
from lakehouse.settings import Settings, SettingsError

T0 = datetime(2019, 10, 1, 0, 0, tzinfo=UTC)
HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeKinesis:
    """Records each PutRecords call; ``fail(call_index, entry_index)`` picks failing entries."""

    def __init__(self, clock: FakeClock | None = None, fail=None, crash_on_call: int | None = None) -> None:
        self.clock = clock
        self.fail = fail or (lambda call, entry: False)
        self.crash_on_call = crash_on_call
        self.calls: list[dict] = []
        self.sequence = 0

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        call = len(self.calls)
        if call == self.crash_on_call:
            raise KeyboardInterrupt("worker killed")
        self.calls.append({"time": self.clock() if self.clock else None, "records": Records})
        results = []
        for index, _record in enumerate(Records):
            if self.fail(call, index):
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"}
                )
            else:
                self.sequence += 1
                results.append({"ShardId": "shardId-000000000000", "SequenceNumber": str(self.sequence)})
        failed = sum("ErrorCode" in r for r in results)
        return {"FailedRecordCount": failed, "Records": results}


def event(seconds: float, number: int = 0, *, session: str | None = "s", payload: int = 0) -> Event:
    """An event at T0 + seconds; ``payload`` pads its brand to make the record that many bytes larger."""
    return make_event(
        event_id=f"id-{number:06d}",
        event_time=T0 + timedelta(seconds=seconds),
        event_type="view",
        product_id=number,
        category_id=1,
        category_code=None,
        brand="x" * payload if payload else None,
        price=Decimal("1.50"),
        user_id=7,
        user_session=session,
    )


def run_replay(events, client, tmp_path, *, clock=None, speedup=0.0, max_events=1_000_000, **kwargs):
    clock = clock or FakeClock()
    return replay(
        events,
        client,
        stream_name="s1",
        run_id="manual__1",
        start=T0,
        end=T0 + timedelta(days=1),
        speedup=speedup,
        max_events=max_events,
        checkpoint=kwargs.pop("checkpoint", LocalCheckpoint(tmp_path / "checkpoint.json")),
        clock=clock,
        sleep=clock.sleep,
        draw=lambda: 0.5,
        **kwargs,
    )


def sent_ids(client: FakeKinesis) -> list[str]:
    return [json.loads(r["Data"])["event_id"] for call in client.calls for r in call["records"]]


# --- retries -----------------------------------------------------------------------------------


def stubbed_client():
    client = boto3.client(
        "kinesis",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        endpoint_url="http://127.0.0.1:9",
    )
    return client, Stubber(client)


def test_partly_failed_batch_resends_only_failed():
    client, stubber = stubbed_client()
    batch = [event(0, n) for n in range(4)]
    entries = [{"Data": e.data, "PartitionKey": e.partition_key} for e in batch]
    stubber.add_response(
        "put_records",
        {
            "FailedRecordCount": 2,
            "Records": [
                {"ShardId": "shardId-0", "SequenceNumber": "10"},
                {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"},
                {"ShardId": "shardId-0", "SequenceNumber": "11"},
                {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure"},
            ],
        },
        {"StreamName": "s1", "Records": entries},
    )
    # The second call must carry exactly entries 1 and 3, in their order.
    stubber.add_response(
        "put_records",
        {
            # The service model allows FailedRecordCount >= 1 only: a full success omits it.
            "Records": [
                {"ShardId": "shardId-0", "SequenceNumber": "12"},
                {"ShardId": "shardId-0", "SequenceNumber": "13"},
            ],
        },
        {"StreamName": "s1", "Records": [entries[1], entries[3]]},
    )
    sleeps: list[float] = []
    from lakehouse.replay import DeliveryStats

    stats = DeliveryStats()
    with stubber:
        delivered = put_batch(
            client, "s1", batch, retry=RetryPolicy(), sleep=sleeps.append, draw=lambda: 0.5, stats=stats
        )
        stubber.assert_no_pending_responses()
    assert [(e.event_id, seq) for e, _shard, seq in delivered] == [
        ("id-000000", "10"),
        ("id-000002", "11"),
        ("id-000001", "12"),
        ("id-000003", "13"),
    ]
    # Full jitter after attempt 1: draw 0.5 times min(cap 10, base 0.1 * 2**1).
    assert sleeps == [pytest.approx(0.1)]
    assert stats.resent_records == 2
    assert stats.calls == 2


def test_throttled_call_retried_whole():
    client, stubber = stubbed_client()
    batch = [event(0, n) for n in range(3)]
    entries = [{"Data": e.data, "PartitionKey": e.partition_key} for e in batch]
    for _ in range(2):
        stubber.add_client_error(
            "put_records",
            service_error_code="ProvisionedThroughputExceededException",
            service_message="Rate exceeded for stream s1",
            http_status_code=400,
            expected_params={"StreamName": "s1", "Records": entries},
        )
    stubber.add_response(
        "put_records",
        {"Records": [{"ShardId": "shardId-0", "SequenceNumber": str(n)} for n in range(3)]},
        {"StreamName": "s1", "Records": entries},
    )
    sleeps: list[float] = []
    from lakehouse.replay import DeliveryStats

    stats = DeliveryStats()
    with stubber:
        delivered = put_batch(
            client, "s1", batch, retry=RetryPolicy(), sleep=sleeps.append, draw=lambda: 0.5, stats=stats
        )
    assert len(delivered) == 3
    # Attempts 1 and 2 wait 0.5 * 0.2 s and 0.5 * 0.4 s: the window doubles.
    assert sleeps == [pytest.approx(0.1), pytest.approx(0.2)]
    assert stats.rejected_calls == 2


def test_backoff_window_is_capped():
    policy = RetryPolicy(base_seconds=0.1, cap_seconds=2.0)
    assert policy.delay(10, lambda: 1.0) == 2.0
    assert policy.delay(3, lambda: 1.0) == pytest.approx(0.8)
    assert policy.delay(3, lambda: 0.0) == 0.0


def test_other_client_error_not_retried():
    client, stubber = stubbed_client()
    stubber.add_client_error(
        "put_records", service_error_code="ResourceNotFoundException", http_status_code=400
    )
    from botocore.exceptions import ClientError

    from lakehouse.replay import DeliveryStats

    sleeps: list[float] = []
    with stubber, pytest.raises(ClientError, match="ResourceNotFoundException"):
        put_batch(
            client,
            "s1",
            [event(0)],
            retry=RetryPolicy(),
            sleep=sleeps.append,
            draw=lambda: 0.5,
            stats=DeliveryStats(),
        )
    assert sleeps == []


def test_undeliverable_record_fails_with_counts(tmp_path):
    # From the second call on, the first entry always fails. The first batch (500 records) is
    # delivered, then the first entry of the second batch (3 records) fails on all 3 attempts.
    clock = FakeClock()
    client = FakeKinesis(clock, fail=lambda call, entry: call >= 1 and entry == 0 and call < 10)
    events = [event(0, n) for n in range(503)]
    with pytest.raises(DeliveryError) as raised:
        run_replay(events, client, tmp_path, clock=clock, retry=RetryPolicy(max_attempts=3))
    message = str(raised.value)
    assert "1 of 3 records of a batch could not be delivered to stream s1 after 3 attempts" in message
    assert "ProvisionedThroughputExceededException x3" in message
    assert "Delivered before this batch: 500" in message
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["sent"] == 500
    assert state["complete"] is False


# --- batch limits ------------------------------------------------------------------------------


def test_batches_split_at_500_records(tmp_path):
    client = FakeKinesis()
    run_replay([event(0, n) for n in range(1201)], client, tmp_path)
    assert [len(call["records"]) for call in client.calls] == [500, 500, 201]
    assert sent_ids(client) == [f"id-{n:06d}" for n in range(1201)]


def test_batches_split_at_5_mib(tmp_path):
    client = FakeKinesis()
    # Each record is about 1,000,000 bytes: 5 fit in 5 MiB (5,242,880 bytes), 6 do not.
    events = [event(0, n, payload=999_700) for n in range(12)]
    size = events[0].size
    assert 5 * size <= MAX_BATCH_BYTES < 6 * size
    run_replay(events, client, tmp_path)
    assert [len(call["records"]) for call in client.calls] == [5, 5, 2]
    for call in client.calls:
        total = sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in call["records"])
        assert total <= MAX_BATCH_BYTES


def test_partition_key_counts_toward_record_limit(tmp_path):
    key = "k" * 40
    # With a brand of n characters a record is base.size + n - 1 bytes.
    base = event(0, 1, session=key, payload=1)
    padding = MAX_RECORD_BYTES - base.size + 1
    exact = event(0, 1, session=key, payload=padding)
    assert exact.size == MAX_RECORD_BYTES
    client = FakeKinesis()
    run_replay([exact], client, tmp_path)
    assert len(client.calls) == 1
    too_large = event(0, 2, session=key, payload=padding + 1)
    with pytest.raises(ReplayError, match=f"{MAX_RECORD_BYTES + 1} bytes with its partition key"):
        run_replay([too_large], FakeKinesis(), tmp_path / "other")


def test_partition_key_falls_back_to_user_id():
    assert event(0, session="abc").partition_key == "abc"
    assert event(0, session=None).partition_key == "7"


# --- pacing ------------------------------------------------------------------------------------


def test_pacing_at_speedup_60(tmp_path):
    clock = FakeClock()
    client = FakeKinesis(clock)
    # Event-time offsets in seconds; at speed-up 60 a minute of events takes one second.
    offsets = [0, 60, 120, 120, 150, 300]
    run_replay([event(s, n) for n, s in enumerate(offsets)], client, tmp_path, clock=clock, speedup=60)
    assert [call["time"] for call in client.calls] == [0.0, 1.0, 2.0, 2.5, 5.0]
    assert [len(call["records"]) for call in client.calls] == [1, 1, 2, 1, 1]
    assert sum(clock.sleeps) == pytest.approx(5.0)


def test_pacing_reports_lag_when_sending_is_slow(tmp_path):
    clock = FakeClock()

    class SlowKinesis(FakeKinesis):
        def put_records(self, StreamName, Records):
            response = super().put_records(StreamName, Records)
            clock.now += 1.5  # each call takes 1.5 s, more than the 1 s between events
            return response

    client = SlowKinesis(clock)
    result = run_replay([event(60 * n, n) for n in range(4)], client, tmp_path, clock=clock, speedup=60)
    # Due times are 0, 1, 2, 3. The call at 0 ends at 1.5, so event 1 is sent late. That call
    # ends at 3.0, when events 2 and 3 are both due, so they share the last call.
    assert [call["time"] for call in client.calls] == [0.0, 1.5, 3.0]
    assert [len(call["records"]) for call in client.calls] == [1, 1, 2]
    # Lag is measured when a call returns: 1.5 - 0, 3.0 - 1, then 4.5 - 3.
    assert result.max_lag_seconds == pytest.approx(2.0)
    assert result.final_lag_seconds == pytest.approx(1.5)


def test_speedup_zero_never_sleeps(tmp_path):
    clock = FakeClock()
    client = FakeKinesis(clock)
    run_replay([event(3600 * n, n) for n in range(10)], client, tmp_path, clock=clock, speedup=0)
    assert clock.sleeps == []
    assert [len(call["records"]) for call in client.calls] == [10]


def test_progress_logged_at_interval_not_per_batch(tmp_path, caplog):
    clock = FakeClock()
    client = FakeKinesis(clock)
    # 20 batches of one event, 1 s apart at speed-up 1: the 5 s interval gives 3 progress lines.
    with caplog.at_level("INFO", logger="lakehouse.replay"):
        run_replay(
            [event(n, n) for n in range(20)],
            client,
            tmp_path,
            clock=clock,
            speedup=1,
            log_interval_seconds=5,
        )
    progress = [r.getMessage() for r in caplog.records if "records sent of at most" in r.getMessage()]
    assert len(client.calls) == 20
    assert len(progress) == 3
    assert progress[0].startswith("Replay into s1: 5 records sent of at most 1000000, 1 records/s")


def test_progress_logged_during_long_wait(tmp_path, caplog):
    clock = FakeClock()
    client = FakeKinesis(clock)
    # Two events 100 s apart at speed-up 1: the wait is slept in 10 s slices, each logged.
    with caplog.at_level("INFO", logger="lakehouse.replay"):
        run_replay(
            [event(0, 0), event(100, 1)], client, tmp_path, clock=clock, speedup=1, log_interval_seconds=10
        )
    progress = [r.getMessage() for r in caplog.records if "records sent of at most" in r.getMessage()]
    assert clock.sleeps == [10.0] * 10
    assert len(progress) == 10
    assert all(line.startswith("Replay into s1: 1 records sent") for line in progress)
    assert [call["time"] for call in client.calls] == [0.0, 100.0]


# --- checkpoints -------------------------------------------------------------------------------


def test_crash_resumes_from_checkpoint(tmp_path):
    events = [event(n, n) for n in range(1200)]
    crashing = FakeKinesis(crash_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        run_replay(events, crashing, tmp_path, checkpoint_interval_seconds=0)
    assert sent_ids(crashing) == [f"id-{n:06d}" for n in range(1000)]
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["sent"] == 1000
    assert state["first_sequence"] == {"shardId-000000000000": "1"}

    retry = FakeKinesis()
    result = run_replay(events, retry, tmp_path)
    assert sent_ids(retry) == [f"id-{n:06d}" for n in range(1000, 1200)]
    assert result.sent == 1200
    assert result.resumed_from == 1000
    assert result.complete is True
    # The first sequence number of the first try is kept, so reconcile reads from there.
    assert result.first_sequence == {"shardId-000000000000": "1"}

    again = FakeKinesis()
    assert run_replay(events, again, tmp_path).sent == 1200
    assert again.calls == []


def test_checkpoint_of_another_replay_rejected(tmp_path):
    checkpoint = LocalCheckpoint(tmp_path / "checkpoint.json")
    checkpoint.save({"stream_name": "other", "start": T0.isoformat(), "sent": 5})
    with pytest.raises(ReplayError, match="belongs to another replay"):
        run_replay([event(0)], FakeKinesis(), tmp_path, checkpoint=checkpoint)


def test_max_events_stops_the_replay(tmp_path):
    client = FakeKinesis()
    result = run_replay([event(n, n) for n in range(50)], client, tmp_path, max_events=7)
    assert result.sent == 7
    assert sent_ids(client) == [f"id-{n:06d}" for n in range(7)]


# --- reading the lake --------------------------------------------------------------------------


def write_landing(lake: Path, day: str, name: str, lines: list[str]) -> None:
    folder = lake / "landing" / "events" / f"event_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\r\n".join([HEADER, *lines]) + "\r\n")


def row(time: str, product: int, session: str = "s1", price: str = "1.00") -> str:
    return f"{time} UTC,view,{product},2053013555631882655,,brand,{price},5,{session}"


def test_read_events_sorts_across_files_with_spills(lake):
    times = ["00:00:05", "00:00:01", "00:00:03", "00:00:01", "00:00:09", "00:00:02", "00:00:07"]
    write_landing(lake, "2019-10-01", "a.csv", [row(f"2019-10-01 {t}", n) for n, t in enumerate(times[:4])])
    write_landing(
        lake, "2019-10-01", "b.csv", [row(f"2019-10-01 {t}", 10 + n) for n, t in enumerate(times[4:])]
    )
    stats = SourceStats()
    events = list(read_events(LocalLakeFiles(lake), T0, T0 + timedelta(days=1), stats, chunk_size=2))
    keys = [(e.event_time, e.event_id) for e in events]
    assert keys == sorted(keys)
    assert [e.event_time.strftime("%H:%M:%S") for e in events] == sorted(times)
    assert stats.sources == {"2019-10-01": "landing"}
    assert stats.files == 2


def test_read_events_filters_range_and_counts_bad_rows(lake):
    lines = [
        row("2019-10-01 00:59:59", 1),
        row("2019-10-01 01:00:00", 2),
        row("2019-10-01 01:29:59", 3),
        row("2019-10-01 01:30:00", 4),
        row("2019-10-01 01:10:00", 5, price="-1.00"),
        "2019-10-01 01:10:00 UTC,view,6,1,,b",
        row("2019-10-01 01:10:00", 7).replace(",view,", ",click,"),
    ]
    write_landing(lake, "2019-10-01", "a.csv", lines)
    stats = SourceStats()
    start = datetime(2019, 10, 1, 1, 0, tzinfo=UTC)
    events = list(read_events(LocalLakeFiles(lake), start, start + timedelta(minutes=30), stats))
    assert [json.loads(e.data)["product_id"] for e in events] == [2, 3]
    assert stats.skipped_rows == 3


def test_landing_rows_split_like_glue(lake):
    """Each line is one row: an open quote, a bare CR or bad bytes spoil only their own line."""
    folder = lake / "landing" / "events" / "event_date=2019-10-01"
    folder.mkdir(parents=True)
    lines = [
        HEADER.encode(),
        b'2019-10-01 00:00:00 UTC,view,1,2,c,"b,1.00,3,s',
        row("2019-10-01 00:00:01", 2).encode(),
        b"2019-10-01 00:00:02 UTC,view,3,2,c,xi\raomi,1.00,3,s",
        b"2019-10-01 00:00:03 UTC,\tview\t,4,2,c,b,1.00,3,s",
        "2019-10-01 00:00:04 UTC,view,5,2,c,b,\u00a010.50,3,s".encode(),
        b"2019-10-01 00:00:05 UTC,view,6,2,c,b\xff,1.00,3,s",
        row("2019-10-02 00:00:06", 7).encode(),
        b",,,,,,,,",
        row("2019-10-01 00:00:07", 8).encode(),
    ]
    (folder / "a.csv").write_bytes(b"\n".join(lines) + b"\n")
    stats = SourceStats()
    events = list(read_events(LocalLakeFiles(lake), T0, T0 + timedelta(days=2), stats))
    payloads = [json.loads(e.data) for e in events]
    assert [p["product_id"] for p in payloads] == [2, 3, 8]
    # Spark's trim leaves a CR inside a field, and Glue keeps the row.
    assert payloads[1]["brand"] == "xi\raomi"
    # Open quote, tabs, a no-break space, bad bytes, another day's row and an empty row.
    assert stats.skipped_rows == 6


def test_corrupt_checkpoint_names_its_file(tmp_path):
    path = tmp_path / "checkpoint.json"
    for content in ("{not json", "[1, 2]", '{"sent": "abc"}', '{"sent": -5}', '{"sent": 99999999}'):
        path.write_text(content)
        with pytest.raises(ReplayError, match=f"invalid checkpoint {path}"):
            run_replay([event(0)], FakeKinesis(), tmp_path, checkpoint=LocalCheckpoint(path))


def test_empty_finished_checkpoint_replays_again(tmp_path):
    checkpoint = LocalCheckpoint(tmp_path / "checkpoint.json")
    assert run_replay([], FakeKinesis(), tmp_path, checkpoint=checkpoint).sent == 0
    # The days were landed after the first try found nothing.
    client = FakeKinesis()
    assert run_replay([event(0, 1), event(1, 2)], client, tmp_path, checkpoint=checkpoint).sent == 2
    assert sent_ids(client) == ["id-000001", "id-000002"]


def test_response_without_records_retried():
    class Closing(FakeKinesis):
        def put_records(self, StreamName, Records):
            if not self.calls:
                self.calls.append({"time": None, "records": Records})
                return {"ResponseMetadata": {"HTTPStatusCode": 200}}
            return super().put_records(StreamName, Records)

    client = Closing()
    delivered = put_batch(
        client,
        "s1",
        [event(0, 1), event(1, 2)],
        retry=RetryPolicy(),
        sleep=lambda seconds: None,
        draw=lambda: 0.5,
        stats=DeliveryStats(),
    )
    assert [e.event_id for e, _shard, _sequence in delivered] == ["id-000001", "id-000002"]
    assert len(client.calls) == 2


def test_landing_event_payload_and_id():
    fields = [
        "2019-10-01 00:00:00 UTC",
        "view",
        "44600062",
        "2103807459595387724",
        "",
        "shiseido",
        "35.79",
        "541312140",
        "72d76fde",
    ]
    built = landing_event(fields)
    payload = json.loads(built.data)
    assert payload == {
        "event_id": hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()[:32],
        "event_time": "2019-10-01T00:00:00Z",
        "event_type": "view",
        "product_id": 44600062,
        "category_id": 2103807459595387724,
        "category_code": None,
        "brand": "shiseido",
        "price": 35.79,
        "user_id": 541312140,
        "user_session": "72d76fde",
    }
    assert built.partition_key == "72d76fde"
    assert landing_event(list(fields)).event_id == built.event_id
    assert landing_event([*fields[:6], "35.80", *fields[7:]]).event_id != built.event_id


def test_silver_preferred_over_landing(lake):
    import pyarrow as pa
    import pyarrow.parquet as pq

    silver = lake / "silver" / "events" / "event_date=2019-10-01"
    silver.mkdir(parents=True)
    table = pa.table(
        {
            "event_id": ["b" * 32, "a" * 32],
            "event_time": pa.array(
                [datetime(2019, 10, 1, 0, 0, 2), datetime(2019, 10, 1, 0, 0, 1)], pa.timestamp("us")
            ),
            "event_type": ["cart", "view"],
            "product_id": pa.array([1, 2], pa.int64()),
            "category_id": pa.array([3, 4], pa.int64()),
            "category_code": [None, "a.b"],
            "brand": ["x", None],
            "price": pa.array([Decimal("9.99"), Decimal("0.00")], pa.decimal128(12, 2)),
            "user_id": pa.array([5, 6], pa.int64()),
            "user_session": [None, "s2"],
            "event_hour": pa.array([0, 0], pa.int32()),
        }
    )
    pq.write_table(table, silver / "part-00000.snappy.parquet", use_deprecated_int96_timestamps=True)
    write_landing(lake, "2019-10-01", "a.csv", [row("2019-10-01 00:00:00", 99)])
    write_landing(lake, "2019-10-02", "a.csv", [row("2019-10-02 00:00:00", 100)])
    stats = SourceStats()
    events = list(read_events(LocalLakeFiles(lake), T0, T0 + timedelta(days=2), stats))
    payloads = [json.loads(e.data) for e in events]
    assert [p["event_id"] for p in payloads[:2]] == ["a" * 32, "b" * 32]
    assert payloads[1] == {
        "event_id": "b" * 32,
        "event_time": "2019-10-01T00:00:02Z",
        "event_type": "cart",
        "product_id": 1,
        "category_id": 3,
        "category_code": None,
        "brand": "x",
        "price": 9.99,
        "user_id": 5,
        "user_session": None,
    }
    assert events[1].partition_key == "5"
    assert payloads[2]["product_id"] == 100
    assert stats.sources == {"2019-10-01": "silver", "2019-10-02": "landing"}


def test_reconcile_counts_lost_and_duplicates():
    sent = [event(0, 1), event(0, 2), event(0, 2), event(0, 3)]
    received = [sent[0].data, sent[1].data, sent[1].data, sent[1].data, b'{"event_id":"zzz"}']
    report = reconcile(sent, received)
    assert report.expected_records == 4
    assert report.expected_ids == 3
    assert report.received_records == 4
    assert report.received_ids == 2
    assert report.lost == 1
    assert report.lost_sample == ["id-000003"]
    assert report.duplicates == 2
    assert report.source_duplicates == 1
    assert report.unexpected_records == 1


# --- parameters and settings -------------------------------------------------------------------


def params(**values):
    base = {"start": "2019-10-01", "end": "2019-10-01", "speedup": 60, "max_events": 10}
    return {"params": {**base, **values}}


def test_replay_parameters_date_range_is_whole_day():
    parsed = ReplayParameters.from_context(params())
    assert parsed.start == T0
    assert parsed.end == T0 + timedelta(days=1)
    assert parsed.stream_name is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-10-01 01:02:03", datetime(2019, 10, 1, 1, 2, 3, tzinfo=UTC)),
        ("2019-10-01T01:02Z", datetime(2019, 10, 1, 1, 2, tzinfo=UTC)),
        ("2019-10-01 01:02:03 UTC", datetime(2019, 10, 1, 1, 2, 3, tzinfo=UTC)),
        ("2019-10-01T01:02:03+00:00", datetime(2019, 10, 1, 1, 2, 3, tzinfo=UTC)),
    ],
)
def test_utc_timestamp_forms(text, expected):
    assert parse_utc_timestamp(text, "start") == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"start": "2019-10-02", "end": "2019-10-01"}, "invalid range: end"),
        ({"end": "2019-11-02"}, "expected at most 31 days"),
        ({"start": "2019-10-01T00:00+02:00"}, "invalid start"),
        ({"start": "2019-02-30"}, "invalid start"),
        ({"speedup": 3601}, "invalid speedup 3601.0"),
        ({"speedup": -1}, "invalid speedup"),
        ({"speedup": "fast"}, "invalid speedup"),
        ({"max_events": 0}, "invalid max_events 0"),
        ({"stream_name": "bad name!"}, "invalid stream_name"),
        ({"stream_name": "s" * 129}, "invalid stream_name"),
        ({"stream_name": ".."}, "invalid stream_name"),
        ({"start": "9999-12-31", "end": "9999-12-31"}, "invalid end '9999-12-31'"),
        ({"start": "2019-10-01", "end": "2019-10-01", "speedup": 0.5}, "would take 48.0 hours"),
    ],
)
def test_replay_parameters_rejected(values, message):
    with pytest.raises(ParameterError, match=message):
        ReplayParameters.from_context(params(**values))


def test_reversed_range_shows_typed_values():
    with pytest.raises(ParameterError, match="typed: start '2019-10-02', end '2019-10-01'"):
        ReplayParameters.from_context(params(start="2019-10-02", end="2019-10-01"))


def test_empty_stream_name_means_setting():
    assert ReplayParameters.from_context(params(stream_name="")).stream_name is None


def test_stream_settings_from_env():
    assert Settings.from_env({}).stream_shards is None
    assert Settings.from_env({}).stream_name == "ecommerce-events"
    assert Settings.from_env({"LAKEHOUSE_STREAM_SHARDS": "on-demand"}).stream_shards is None
    assert Settings.from_env({"LAKEHOUSE_STREAM_SHARDS": "4"}).stream_shards == 4
    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_STREAM_SHARDS"):
        Settings.from_env({"LAKEHOUSE_STREAM_SHARDS": "-2"})
    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_STREAM_NAME"):
        Settings.from_env({"LAKEHOUSE_STREAM_NAME": "a/b"})
    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_STREAM_NAME"):
        Settings.from_env({"LAKEHOUSE_STREAM_NAME": ".."})
    with pytest.raises(SettingsError, match="invalid LAKEHOUSE_KINESIS_LOCAL_PORT"):
        Settings.from_env({"LAKEHOUSE_KINESIS_LOCAL_PORT": "70000"})


# --- the local endpoint ------------------------------------------------------------------------


@pytest.fixture
def endpoint_dir(tmp_path):
    from lakehouse.kinesis_local import stop_endpoint

    folder = tmp_path / "kinesis"
    yield folder
    stop_endpoint(folder)


def test_endpoint_reused_across_processes(endpoint_dir):
    from lakehouse.kinesis_local import ensure_endpoint, read_endpoint, stop_endpoint

    first, started = ensure_endpoint(endpoint_dir)
    assert started is True
    assert first.host == "127.0.0.1"
    again, started_again = ensure_endpoint(endpoint_dir)
    assert started_again is False
    assert again == first
    # Another process, as a task under a scheduler, finds the same server through the file.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT / "plugins")!r})
        from pathlib import Path
        from lakehouse.kinesis_local import find_endpoint
        print(find_endpoint(Path({str(endpoint_dir)!r})).pid)
        """
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(output.stdout.strip()) == first.pid
    assert stop_endpoint(endpoint_dir) == first
    assert read_endpoint(endpoint_dir) is None


def test_ensure_stream_creates_then_reuses(endpoint_dir):
    from lakehouse.kinesis_local import ensure_endpoint, kinesis_client
    from lakehouse.replay import ensure_stream

    endpoint, _ = ensure_endpoint(endpoint_dir)
    client = kinesis_client(endpoint)
    created = ensure_stream(client, "provisioned", 3, poll_seconds=0.05)
    assert created["created"] is True
    assert created["stream_mode"] == "PROVISIONED"
    assert created["open_shards"] == 3
    reused = ensure_stream(client, "provisioned", 3, poll_seconds=0.05)
    assert reused["created"] is False
    on_demand = ensure_stream(client, "on-demand", None, poll_seconds=0.05)
    assert on_demand["stream_mode"] == "ON_DEMAND"


def test_replay_and_read_back_on_endpoint(endpoint_dir, tmp_path):
    from lakehouse.kinesis_local import ensure_endpoint, kinesis_client
    from lakehouse.replay import ensure_stream

    endpoint, _ = ensure_endpoint(endpoint_dir)
    client = kinesis_client(endpoint)
    ensure_stream(client, "s1", 2, poll_seconds=0.05)
    events = [event(n, n, session=f"session-{n % 7}") for n in range(1100)]
    result = run_replay(events, client, tmp_path)
    assert result.sent == 1100
    assert set(result.first_sequence) <= {"shardId-000000000000", "shardId-000000000001"}
    received = list(read_stream(client, "s1", result.first_sequence, poll_seconds=0.01))
    assert sorted(json.loads(data)["event_id"] for data in received) == [e.event_id for e in events]
    report = reconcile(events, received)
    assert (report.lost, report.duplicates, report.received_records) == (0, 0, 1100)


def test_sample_rows_are_all_replayable():
    """Every whole row of the shipped sample is an event; only the cut-off last row is not."""
    with (PROJECT_ROOT / "include/data/sample/2019-Oct-first-rows.csv").open(newline="") as stream:
        rows = list(csv.reader(stream))[1:]
    built = [landing_event(r) for r in rows]
    assert sum(e is None for e in built) == 1
    assert built[-1] is None
