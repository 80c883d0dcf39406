"""Benchmark: the replay producer against a bare put_records loop, and pacing drift at speed-up 60.

Both senders push the same records (the shipped Oct rows, landed into a temporary lake) to the
same local moto endpoint on 127.0.0.1 in the same run. They take turns over several rounds, each
round into a fresh stream, and the median round of each is reported. The producer's figure includes
reading and sorting the CSV, JSON encoding, batching by count and size, and the checkpoint
file; the bare loop sends records prepared in advance, 500 per call. moto's server dominates
both, so the gap between them is the producer's own cost, not what AWS would sustain.

The pacing run replays a window of event time at speed-up 60 with the real clock and reports
how far the last record lagged behind its schedule.

    .venv/bin/python bench/replay_throughput.py
    .venv/bin/python bench/replay_throughput.py --rounds 1 --window-minutes 2 --json replay.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common

SAMPLE = common.PROJECT_ROOT / "include" / "data" / "sample" / "2019-Oct-first-rows.csv"
# The sample's busiest stretch: about 560 events per minute of event time.
WINDOW_START = datetime(2019, 10, 1, 2, 30, tzinfo=UTC)
DAY_START = datetime(2019, 10, 1, tzinfo=UTC)


def producer_round(client, lake: Path, stream: str, round_number: int) -> tuple[float, int]:
    from lakehouse.replay import LocalCheckpoint, LocalLakeFiles, read_events, replay

    files = LocalLakeFiles(lake)
    end = DAY_START + timedelta(days=1)
    began = time.perf_counter()
    result = replay(
        read_events(files, DAY_START, end),
        client,
        stream_name=stream,
        run_id=f"bench_{round_number}",
        start=DAY_START,
        end=end,
        speedup=0,
        max_events=10**9,
        checkpoint=LocalCheckpoint(lake / "bench-checkpoints" / f"{stream}.json"),
    )
    return time.perf_counter() - began, result.sent


def bare_round(client, entries: list[dict], stream: str) -> float:
    began = time.perf_counter()
    for offset in range(0, len(entries), 500):
        response = client.put_records(StreamName=stream, Records=entries[offset : offset + 500])
        if response.get("FailedRecordCount"):
            raise RuntimeError(f"bare loop: {response['FailedRecordCount']} records failed")
    return time.perf_counter() - began


def pacing_run(client, lake: Path, stream: str, minutes: float) -> dict[str, float]:
    from lakehouse.replay import LocalCheckpoint, LocalLakeFiles, read_events, replay

    end = WINDOW_START + timedelta(minutes=minutes)
    events = list(read_events(LocalLakeFiles(lake), WINDOW_START, end))
    span = (events[-1].event_time - events[0].event_time).total_seconds()
    began = time.perf_counter()
    result = replay(
        iter(events),
        client,
        stream_name=stream,
        run_id="bench_pacing",
        start=WINDOW_START,
        end=end,
        speedup=60,
        max_events=10**9,
        checkpoint=LocalCheckpoint(lake / "bench-checkpoints" / f"{stream}.json"),
    )
    elapsed = time.perf_counter() - began
    return {
        "events": result.sent,
        "event_time_span_s": span,
        "scheduled_wall_s": span / 60,
        "measured_wall_s": elapsed,
        "drift_s": elapsed - span / 60,
        "final_lag_s": result.final_lag_seconds,
        "max_lag_s": result.max_lag_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each sender (default 3)")
    parser.add_argument(
        "--window-minutes",
        type=float,
        default=10.0,
        help="minutes of event time in the pacing run; at speed-up 60 each takes 1 s (default 10)",
    )
    args = parser.parse_args()

    from lakehouse.kinesis_local import ensure_endpoint, kinesis_client, stop_endpoint
    from lakehouse.landing import land_file
    from lakehouse.replay import LocalLakeFiles, ensure_stream, read_events

    lake, temporary = common.lake_directory(args)
    endpoint_dir = lake / "kinesis"
    try:
        land_file(SAMPLE, lake)
        endpoint, _ = ensure_endpoint(endpoint_dir)
        client = kinesis_client(endpoint)
        events = list(read_events(LocalLakeFiles(lake), DAY_START, DAY_START + timedelta(days=1)))
        entries = [{"Data": e.data, "PartitionKey": e.partition_key} for e in events]
        payload_bytes = sum(e.size for e in events)

        producer_times: list[float] = []
        bare_times: list[float] = []
        for number in range(args.rounds):
            for sender in ("producer", "bare"):
                stream = f"bench-{sender}-{number}"
                ensure_stream(client, stream, 2, poll_seconds=0.05)
                if sender == "producer":
                    seconds, sent = producer_round(client, lake, stream, number)
                    if sent != len(events):
                        raise RuntimeError(f"producer sent {sent} records, expected {len(events)}")
                    producer_times.append(seconds)
                else:
                    bare_times.append(bare_round(client, entries, stream))
                # moto keeps every record in memory; dropping the stream keeps rounds comparable.
                client.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)

        producer = statistics.median(producer_times)
        bare = statistics.median(bare_times)
        ensure_stream(client, "bench-pacing", 2, poll_seconds=0.05)
        pacing = pacing_run(client, lake, "bench-pacing", args.window_minutes)

        figures = {
            "records": len(events),
            "megabytes": common.mib(payload_bytes),
            "rounds": args.rounds,
            "producer_s": producer_times,
            "bare_s": bare_times,
            "producer_records_per_s": len(events) / producer,
            "bare_records_per_s": len(events) / bare,
            "producer_to_bare_time": producer / bare,
            "pacing_speedup_60": pacing,
        }
        common.print_table(
            f"Replay throughput to moto on {endpoint.url}: {len(events):,} records, "
            f"{common.mib(payload_bytes):.1f} MiB, median of {args.rounds} rounds",
            [
                ("producer (s)", producer),
                ("producer (records/s)", len(events) / producer),
                ("bare put_records loop (s)", bare),
                ("bare put_records loop (records/s)", len(events) / bare),
                ("producer time / bare time", producer / bare),
            ],
        )
        common.print_table(
            f"Pacing at speed-up 60 over {args.window_minutes:g} minutes of event time",
            [(name, value) for name, value in pacing.items()],
        )
        common.write_json(args.json, figures)
    finally:
        stop_endpoint(endpoint_dir)
        if temporary:
            common.cleanup(lake)


if __name__ == "__main__":
    main()
