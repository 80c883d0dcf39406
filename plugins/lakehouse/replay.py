"""Replay recorded events from the lake into a Kinesis data stream, paced by event time.

The same code runs on both targets, with no Airflow import: the caller passes a Kinesis client
(boto3's, from a hook on AWS or for the local endpoint), the lake's files and a checkpoint store.

* Events of the range ``[start, end)`` come from silver Parquet of each day, or from the day's
  landing CSV files when silver is absent. Each day is sorted by ``(event_time, event_id)`` in
  chunks that spill to temporary files, so memory stays bounded whatever the range, and the
  order is the same on every read: a resumed replay skips exactly what was delivered.
* Event-time gaps divided by the speed-up become wall-clock gaps (speed-up 0: no waiting).
* ``PutRecords`` batches stay within 500 records and 5 MiB, each record within 1 MiB, partition
  key included. Failed entries of a batch are resent alone, with exponential backoff and full
  jitter; a throttled call is retried whole the same way.
* Delivery is at least once. Every record carries a stable ``event_id`` so consumers drop
  duplicates, which a resume or a partly failed batch can cause.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import heapq
import json
import logging
import pickle
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Protocol

from lakehouse.landing import EXPECTED_COLUMNS, EXPECTED_HEADER

logger = logging.getLogger(__name__)

# PutRecords limits (Kinesis Data Streams API reference, PutRecords).
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256
# Errors for which the whole PutRecords call may be repeated. Per-entry errors
# (ProvisionedThroughputExceededException, InternalFailure) are always retried.
RETRYABLE_CALL_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)

EVENT_TYPES = frozenset({"view", "cart", "remove_from_cart", "purchase"})
# The rules of glue_scripts/raw_to_silver.py, so a landing row is replayed only when the Glue
# job would have kept it.
_EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( UTC)?$")
_INTEGER = re.compile(r"^[0-9]{1,19}$")
_PRICE = re.compile(r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$")
_MAX_BIGINT = 2**63 - 1
_CR_STAND_IN = "\ue000"
# Java's \s, which the Glue job's blank-line rule uses: narrower than Python's str.isspace.
_BLANK_LINE = re.compile(r"[ \t\n\x0b\f\r]*")
SORT_CHUNK_EVENTS = 200_000


class ReplayError(RuntimeError):
    """The replay cannot go on: a record too large, or a checkpoint of another replay."""


class DeliveryError(ReplayError):
    """Records still failed after the retry budget; the message carries the counts."""


@dataclass(frozen=True, slots=True)
class Event:
    """One record to send: its order key, partition key and JSON payload."""

    event_time: datetime
    event_id: str
    partition_key: str
    data: bytes

    @property
    def size(self) -> int:
        """Bytes that count against the Kinesis limits: payload plus UTF-8 partition key."""
        return len(self.data) + len(self.partition_key.encode("utf-8"))


def _order(event: Event) -> tuple[datetime, str]:
    return (event.event_time, event.event_id)


def _payload(values: dict[str, Any]) -> bytes:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _partition_key(user_session: str | None, user_id: int) -> str:
    # user_session keeps one session's events on one shard, in order; a few rows lack it.
    key = user_session or str(user_id)
    return key[:MAX_PARTITION_KEY_CHARS]


def make_event(
    *,
    event_id: str,
    event_time: datetime,
    event_type: str,
    product_id: int,
    category_id: int,
    category_code: str | None,
    brand: str | None,
    price: Decimal | float,
    user_id: int,
    user_session: str | None,
) -> Event:
    """Build the record of one event; the payload has the silver columns that came from the CSV."""
    moment = event_time.replace(tzinfo=UTC) if event_time.tzinfo is None else event_time.astimezone(UTC)
    values = {
        "event_id": event_id,
        "event_time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "event_type": event_type,
        "product_id": product_id,
        "category_id": category_id,
        "category_code": category_code,
        "brand": brand,
        "price": float(price),
        "user_id": user_id,
        "user_session": user_session,
    }
    return Event(moment, event_id, _partition_key(user_session, user_id), _payload(values))


def landing_event_id(fields: list[str | None]) -> str:
    """Return the event id of a landing row: the first 32 hex digits of a SHA-256 of its fields.

    The hash covers the nine trimmed fields as a JSON array, so exact duplicate rows share an
    id and a comma inside a value cannot shift fields. NOTE: this is not the silver
    ``event_id`` of the same event, which the Glue job derives from the typed columns, so a
    consumer that receives one day replayed from landing and again from silver keeps both copies.
    """
    canonical = json.dumps([value or "" for value in fields], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _valid_id(value: str | None) -> bool:
    return value is not None and bool(_INTEGER.match(value)) and int(value) <= _MAX_BIGINT


def landing_event(row: list[str], day: date | None = None) -> Event | None:
    """Build the record of one landing CSV row, or return None for a row Glue would quarantine.

    :param day: the landing partition the row came from. Glue quarantines a row of another day.
    """
    if len(row) != len(EXPECTED_COLUMNS):
        return None
    # Spark's trim removes spaces only, so a tab or a no-break space keeps a value invalid.
    fields: list[str | None] = [value.strip(" ") or None for value in row]
    event_time, event_type, product_id, category_id, code, brand, price, user_id, session = fields
    if event_time is None or not _EVENT_TIME.match(event_time) or event_type not in EVENT_TYPES:
        return None
    if not (_valid_id(product_id) and _valid_id(category_id) and _valid_id(user_id)):
        return None
    if price is None or not _PRICE.match(price):
        return None
    try:
        moment = datetime.strptime(event_time[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        amount = Decimal(price)
    except (ValueError, InvalidOperation):
        return None
    if amount < 0 or (day is not None and moment.date() != day):
        return None
    return make_event(
        event_id=landing_event_id(fields),
        event_time=moment,
        event_type=event_type,
        product_id=int(product_id),
        category_id=int(category_id),
        category_code=code,
        brand=brand,
        price=amount,
        user_id=int(user_id),
        user_session=session,
    )


class LakeFiles(Protocol):
    """Read access to the lake: a local directory, or an S3 bucket on the aws target."""

    def list(self, folder: str) -> list[str]:
        """Return the paths of the files directly in ``folder`` (relative to the lake), sorted."""
        ...

    def open(self, path: str) -> IO[bytes]:
        """Open one file for binary reading; Parquet readers need it seekable."""
        ...


@dataclass(frozen=True)
class LocalLakeFiles:
    """The lake of the local target: a directory laid out like the bucket."""

    root: Path

    def list(self, folder: str) -> list[str]:
        directory = self.root / folder
        if not directory.is_dir():
            return []
        return sorted(f"{folder}/{p.name}" for p in directory.iterdir() if p.is_file())

    def open(self, path: str) -> IO[bytes]:
        return (self.root / path).open("rb")


@dataclass
class SourceStats:
    """Source of each day's events (silver, landing or missing) and the count of unusable landing rows."""

    sources: dict[str, str] = field(default_factory=dict)
    files: int = 0
    skipped_rows: int = 0


def _is_visible(name: str) -> bool:
    return not name.rsplit("/", 1)[-1].startswith((".", "_"))


def _silver_events(stream: IO[bytes], start: datetime, end: datetime) -> Iterator[Event]:
    # NOTE: requirements.txt, what MWAA installs, does not list pyarrow, so on the aws target a
    # day with silver needs pyarrow added there unless the MWAA image already has it.
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ReplayError(
            "reading silver Parquet needs pyarrow, which is not installed on this worker; "
            "add it to requirements.txt"
        ) from error

    # Spark writes timestamps as INT96 by default; microseconds keep them Python datetimes.
    parquet = pq.ParquetFile(stream, coerce_int96_timestamp_unit="us")
    columns = ["event_id", *EXPECTED_COLUMNS]
    for batch in parquet.iter_batches(batch_size=20_000, columns=columns):
        for row in batch.to_pylist():
            event = make_event(**row)
            if start <= event.event_time < end:
                yield event


def _split_line(line: str) -> list[str]:
    """Split one CSV line into fields, keeping a bare CR inside a field as Spark's parser does."""
    if "\r" not in line:
        return next(csv.reader([line]), [])
    # Python's csv module ends a record at a CR, so the CR is parked in a private-use character.
    fields = next(csv.reader([line.replace("\r", _CR_STAND_IN)]), [])
    return [value.replace(_CR_STAND_IN, "\r") for value in fields]


def _landing_events(
    stream: IO[bytes], name: str, day: date, start: datetime, end: datetime, stats: SourceStats
) -> Iterator[Event]:
    """Yield the usable rows of one landing file, split into rows as the Glue job splits them.

    A row is one line ending at LF, without a trailing CR or a leading byte-order mark, so a
    quote left open never swallows the lines after it. A line with bytes that are not UTF-8 is
    skipped, as Glue quarantines it.
    """
    raw: IO[bytes] = gzip.GzipFile(fileobj=stream) if name.endswith(".gz") else stream
    for data in raw:
        line = data.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
        line = line.removeprefix("\ufeff")
        if _BLANK_LINE.fullmatch(line) or line == EXPECTED_HEADER:
            continue
        event = None
        if "\ufffd" not in line:
            event = landing_event(_split_line(line), day)
        if event is None:
            stats.skipped_rows += 1
        elif start <= event.event_time < end:
            yield event


def _day_events(files: LakeFiles, day: date, start: datetime, end: datetime, stats: SourceStats):
    partition = f"event_date={day.isoformat()}"
    silver = [p for p in files.list(f"silver/events/{partition}") if p.endswith(".parquet")]
    silver = [p for p in silver if _is_visible(p)]
    if silver:
        stats.sources[day.isoformat()] = "silver"
        for path in silver:
            stats.files += 1
            with files.open(path) as stream:
                yield from _silver_events(stream, start, end)
        return
    landing = [
        p
        for p in files.list(f"landing/events/{partition}")
        if p.endswith((".csv", ".csv.gz")) and _is_visible(p)
    ]
    stats.sources[day.isoformat()] = "landing" if landing else "missing"
    for path in landing:
        stats.files += 1
        with files.open(path) as stream:
            yield from _landing_events(stream, path, day, start, end, stats)


def _spill(events: list[Event], path: Path) -> Path:
    with path.open("wb") as stream:
        for event in events:
            pickle.dump(event, stream, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _read_run(path: Path) -> Iterator[Event]:
    # The runs are this process's own temporary files, so unpickling them is safe.
    with path.open("rb") as stream:
        while True:
            try:
                yield pickle.load(stream)
            except EOFError:
                return


def sorted_events(events: Iterable[Event], chunk_size: int = SORT_CHUNK_EVENTS) -> Iterator[Event]:
    """Yield events in ``(event_time, event_id)`` order, holding at most ``chunk_size`` in memory.

    Full chunks are sorted and written to temporary files, then merged.
    """
    with tempfile.TemporaryDirectory(prefix="lakehouse-replay-sort-") as folder:
        runs: list[Path] = []
        chunk: list[Event] = []
        for event in events:
            chunk.append(event)
            if len(chunk) >= chunk_size:
                chunk.sort(key=_order)
                runs.append(_spill(chunk, Path(folder) / f"run-{len(runs):05d}"))
                chunk = []
        chunk.sort(key=_order)
        if not runs:
            yield from chunk
            return
        yield from heapq.merge(*(_read_run(path) for path in runs), chunk, key=_order)


def read_events(
    files: LakeFiles,
    start: datetime,
    end: datetime,
    stats: SourceStats | None = None,
    *,
    chunk_size: int = SORT_CHUNK_EVENTS,
) -> Iterator[Event]:
    """Yield the events of ``[start, end)`` in event-time order, one day at a time.

    A day is read from silver when it has Parquet files, otherwise from its landing CSV files.
    Silver partitions and landing folders both hold only the events of their own day, so
    sorting each day and concatenating the days gives the order of the whole range.
    """
    stats = stats if stats is not None else SourceStats()
    day = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    while day <= last:
        yield from sorted_events(_day_events(files, day, start, end, stats), chunk_size)
        day += timedelta(days=1)


class CheckpointStore(Protocol):
    """Storage of a replay's progress: a JSON file in the local lake, or an S3 object."""

    location: str

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


@dataclass
class LocalCheckpoint:
    """A checkpoint file, replaced atomically so a crash leaves the old or the new state."""

    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        return json.loads(self.path.read_text())

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps(state, indent=1, sort_keys=True))
        partial.replace(self.path)


def checkpoint_key(stream_name: str, run_id: str, start: datetime, end: datetime) -> str:
    """Return the checkpoint's path under ``replay/checkpoints/``, one per stream, run and range."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", stream_name) or stream_name in (".", ".."):
        raise ReplayError(f"invalid stream name {stream_name!r} for a checkpoint path")
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_.") or "run"
    span = f"{start:%Y%m%dT%H%M%S}Z_{end:%Y%m%dT%H%M%S}Z"
    return f"{stream_name}/{safe_run}/{span}.json"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n)) s."""

    max_attempts: int = 8
    base_seconds: float = 0.1
    cap_seconds: float = 10.0

    def delay(self, attempt: int, draw: Callable[[], float]) -> float:
        return draw() * min(self.cap_seconds, self.base_seconds * 2**attempt)


@dataclass
class DeliveryStats:
    """Counts of the PutRecords calls of one replay; ``rejected_calls`` failed as a whole."""

    calls: int = 0
    resent_records: int = 0
    rejected_calls: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)


def _error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def put_batch(
    client: Any,
    stream_name: str,
    batch: list[Event],
    *,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    draw: Callable[[], float],
    stats: DeliveryStats,
    log: logging.Logger = logger,
) -> list[tuple[Event, str, str]]:
    """Send one batch; return each event with the shard id and sequence number it got.

    Only the entries that failed are sent again. After ``retry.max_attempts`` calls the
    remaining entries raise ``DeliveryError``.
    """
    pending = list(batch)
    delivered: list[tuple[Event, str, str]] = []
    for attempt in range(1, retry.max_attempts + 1):
        stats.calls += 1
        entries = [{"Data": e.data, "PartitionKey": e.partition_key} for e in pending]
        try:
            response = client.put_records(StreamName=stream_name, Records=entries)
        except Exception as error:
            code = _error_code(error)
            if code not in RETRYABLE_CALL_ERRORS:
                raise
            stats.rejected_calls += 1
            stats.error_codes[code] += len(pending)
            failed = pending
            log.warning(
                "PutRecords to %s failed as a whole (%s), attempt %d of %d: %d records to resend",
                stream_name,
                code,
                attempt,
                retry.max_attempts,
                len(pending),
            )
        else:
            records = response.get("Records")
            if not isinstance(records, list) or len(records) != len(pending):
                # A server going down can return HTTP 200 with no body. Nothing is known to be
                # delivered, so the whole call counts as failed and is retried.
                records = [{"ErrorCode": "IncompleteResponse"}] * len(pending)
            failed = []
            for event, result in zip(pending, records, strict=True):
                if result.get("ErrorCode"):
                    failed.append(event)
                    stats.error_codes[result["ErrorCode"]] += 1
                else:
                    delivered.append((event, result["ShardId"], result["SequenceNumber"]))
            if failed:
                log.warning(
                    "PutRecords to %s: %d of %d records failed, attempt %d of %d",
                    stream_name,
                    len(failed),
                    len(pending),
                    attempt,
                    retry.max_attempts,
                )
        if not failed:
            return delivered
        if attempt == retry.max_attempts:
            codes = ", ".join(f"{code} x{count}" for code, count in stats.error_codes.most_common())
            raise DeliveryError(
                f"{len(failed)} of {len(batch)} records of a batch could not be delivered to "
                f"stream {stream_name} after {retry.max_attempts} attempts (errors so far: {codes}); "
                f"{len(delivered)} records of that batch were delivered"
            )
        stats.resent_records += len(failed)
        sleep(retry.delay(attempt, draw))
        pending = failed
    raise AssertionError("unreachable: the loop returns or raises")


class Pacer:
    """Turn event-time gaps into wall-clock gaps: ``due = t0 + (event_time - e0) / speedup``.

    The schedule starts at the first event. With speed-up 0, every event is due at once.
    """

    def __init__(self, speedup: float, clock: Callable[[], float]) -> None:
        self.speedup = speedup
        self.clock = clock
        self._origin: tuple[datetime, float] | None = None

    def due(self, event_time: datetime) -> float:
        if self._origin is None:
            self._origin = (event_time, self.clock())
        if self.speedup <= 0:
            return float("-inf")
        first_event, first_wall = self._origin
        return first_wall + (event_time - first_event).total_seconds() / self.speedup


@dataclass
class ReplayResult:
    """Progress and counts of a replay, also stored as its checkpoint.

    ``sent`` and ``first_sequence`` cover every try of the run; the call counts, lags and
    ``elapsed_seconds`` cover the latest try only.
    """

    stream_name: str
    start: str
    end: str
    run_id: str
    max_events: int
    speedup: float
    sent: int = 0
    complete: bool = False
    resumed_from: int = 0
    first_sequence: dict[str, str] = field(default_factory=dict)
    last_event_time: str | None = None
    last_event_id: str | None = None
    max_lag_seconds: float = 0.0
    final_lag_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    calls: int = 0
    resent_records: int = 0
    rejected_calls: int = 0
    skipped_rows: int = 0
    sources: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _same_replay(state: dict[str, Any], result: ReplayResult) -> bool:
    keys = ("stream_name", "start", "end", "run_id", "max_events")
    return all(state.get(key) == getattr(result, key) for key in keys)


def _load_checkpoint(checkpoint: CheckpointStore, max_events: int) -> dict[str, Any] | None:
    """Load a checkpoint and check its shape, so a damaged one fails with its location."""
    fix = "delete it to start the replay over"
    try:
        state = checkpoint.load()
    except ValueError as error:
        raise ReplayError(f"invalid checkpoint {checkpoint.location}: not JSON ({error}); {fix}") from error
    if state is None:
        return None
    if not isinstance(state, dict):
        raise ReplayError(f"invalid checkpoint {checkpoint.location}: expected a JSON object; {fix}")
    sent = state.get("sent")
    if isinstance(sent, bool) or not isinstance(sent, int) or not 0 <= sent <= max_events:
        raise ReplayError(
            f"invalid checkpoint {checkpoint.location}: sent {sent!r}, expected a count from 0 to "
            f"max_events {max_events}; {fix}"
        )
    if not isinstance(state.get("first_sequence") or {}, dict):
        raise ReplayError(f"invalid checkpoint {checkpoint.location}: first_sequence is not an object; {fix}")
    return state


def replay(
    events: Iterable[Event],
    client: Any,
    *,
    stream_name: str,
    run_id: str,
    start: datetime,
    end: datetime,
    speedup: float,
    max_events: int,
    checkpoint: CheckpointStore,
    stats: SourceStats | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
    retry: RetryPolicy | None = None,
    log_interval_seconds: float = 30.0,
    checkpoint_interval_seconds: float = 5.0,
    log: logging.Logger = logger,
) -> ReplayResult:
    """Send ``events`` (in event-time order) to the stream, paced, and return the counts.

    A checkpoint from an earlier try of the same run and range makes the replay skip the
    events it already delivered. The checkpoint is written at most every
    ``checkpoint_interval_seconds``, so a crash resends at most that much, and consumers drop the
    repeats by ``event_id``. A finished checkpoint makes the call send nothing.
    """
    retry = retry or RetryPolicy()
    result = ReplayResult(
        stream_name=stream_name,
        start=start.isoformat(),
        end=end.isoformat(),
        run_id=run_id,
        max_events=max_events,
        speedup=speedup,
    )
    state = _load_checkpoint(checkpoint, max_events)
    if state is not None and state.get("complete") and not state.get("sent"):
        # A finished replay that found nothing: the days may have been landed since.
        state = None
    if state is not None:
        if not _same_replay(state, result):
            raise ReplayError(
                f"checkpoint {checkpoint.location} belongs to another replay "
                f"({state.get('stream_name')}, {state.get('start')} to {state.get('end')}, "
                f"run {state.get('run_id')}); delete it to start over"
            )
        result.sent = result.resumed_from = int(state["sent"])
        result.first_sequence = dict(state.get("first_sequence") or {})
        result.complete = bool(state.get("complete"))
        result.last_event_time = state.get("last_event_time")
        result.last_event_id = state.get("last_event_id")
        if result.complete:
            log.info(
                "Replay into %s of run %s already finished with %d records (checkpoint %s): nothing to send",
                stream_name,
                run_id,
                result.sent,
                checkpoint.location,
            )
            return result
        log.info(
            "Resuming the replay into %s of run %s after %d delivered records (checkpoint %s)",
            stream_name,
            run_id,
            result.sent,
            checkpoint.location,
        )

    delivery = DeliveryStats()
    pacer = Pacer(speedup, clock)
    began = clock()
    last_log = last_save = began
    logged_sent = result.sent
    batch: list[Event] = []
    batch_bytes = 0
    batch_due = float("-inf")

    def save(complete: bool = False) -> None:
        nonlocal last_save
        result.complete = complete
        result.elapsed_seconds = clock() - began
        result.calls = delivery.calls
        result.resent_records = delivery.resent_records
        result.rejected_calls = delivery.rejected_calls
        if stats is not None:
            result.skipped_rows = stats.skipped_rows
            result.sources = dict(stats.sources)
        checkpoint.save(result.as_dict())
        last_save = clock()

    def flush() -> None:
        nonlocal batch, batch_bytes
        if not batch:
            return
        try:
            delivered = put_batch(
                client,
                stream_name,
                batch,
                retry=retry,
                sleep=sleep,
                draw=draw,
                stats=delivery,
                log=log,
            )
        except DeliveryError as error:
            save()
            raise DeliveryError(
                f"{error}. Delivered before this batch: {result.sent} of at most {max_events} "
                f"records; the checkpoint {checkpoint.location} lets a retry resume there"
            ) from error
        for _event, shard_id, sequence in delivered:
            known = result.first_sequence.get(shard_id)
            if known is None or int(sequence) < int(known):
                result.first_sequence[shard_id] = sequence
        result.sent += len(batch)
        result.last_event_time = batch[-1].event_time.isoformat()
        result.last_event_id = batch[-1].event_id
        now = clock()
        if speedup > 0:
            lag = max(0.0, now - batch_due)
            result.final_lag_seconds = lag
            result.max_lag_seconds = max(result.max_lag_seconds, lag)
        batch, batch_bytes = [], 0
        if now - last_save >= checkpoint_interval_seconds:
            save()
        log_progress(now)

    def log_progress(now: float) -> None:
        nonlocal last_log, logged_sent
        if now - last_log < log_interval_seconds:
            return
        rate = (result.sent - logged_sent) / (now - last_log)
        log.info(
            "Replay into %s: %d records sent of at most %d, %.0f records/s, %.1f s behind "
            "schedule, event time %s",
            stream_name,
            result.sent,
            max_events,
            rate,
            result.final_lag_seconds,
            result.last_event_time,
        )
        last_log, logged_sent = now, result.sent

    for index, event in enumerate(events):
        if index < result.resumed_from:
            continue
        if index >= max_events:
            break
        if event.size > MAX_RECORD_BYTES:
            raise ReplayError(
                f"event {event.event_id} is {event.size} bytes with its partition key; "
                f"Kinesis accepts at most {MAX_RECORD_BYTES} per record"
            )
        due = pacer.due(event.event_time)
        if due > clock():
            # Send what is due before waiting, so no record waits on a later one.
            flush()
            # Sleep in slices, so progress is still logged during a long gap in event time.
            while (wait := due - clock()) > 0:
                sleep(min(wait, log_interval_seconds))
                log_progress(clock())
        if len(batch) >= MAX_BATCH_RECORDS or batch_bytes + event.size > MAX_BATCH_BYTES:
            flush()
        batch.append(event)
        batch_bytes += event.size
        batch_due = due
    flush()
    save(complete=True)
    log.info(
        "Replay into %s of run %s finished: %d records sent (%d in this try) in %.1f s over %d "
        "PutRecords calls, %d records resent, max lag %.1f s, %d landing rows skipped as the Glue "
        "job would quarantine them, %s, sources %s",
        stream_name,
        run_id,
        result.sent,
        result.sent - result.resumed_from,
        result.elapsed_seconds,
        result.calls,
        result.resent_records,
        result.max_lag_seconds,
        result.skipped_rows,
        f"stopped at max_events {max_events}" if result.sent >= max_events else "the whole range sent",
        json.dumps(result.sources),
    )
    return result


def ensure_stream(
    client: Any,
    stream_name: str,
    shards: int | None,
    *,
    timeout_seconds: float = 600.0,
    poll_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: logging.Logger = logger,
) -> dict[str, Any]:
    """Create the stream when missing (on-demand when ``shards`` is None), then wait until ACTIVE.

    An existing stream is used as it is, whatever its capacity mode.
    """
    created = False
    try:
        summary = client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    except client.exceptions.ResourceNotFoundException:
        if shards is None:
            arguments: dict[str, Any] = {"StreamModeDetails": {"StreamMode": "ON_DEMAND"}}
        else:
            arguments = {"ShardCount": shards, "StreamModeDetails": {"StreamMode": "PROVISIONED"}}
        try:
            client.create_stream(StreamName=stream_name, **arguments)
            created = True
            log.info("Creating Kinesis stream %s: %s", stream_name, json.dumps(arguments))
        except client.exceptions.ResourceInUseException:
            log.info("Kinesis stream %s was created by another task meanwhile", stream_name)
        summary = client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    deadline = clock() + timeout_seconds
    while summary["StreamStatus"] != "ACTIVE":
        if summary["StreamStatus"] == "DELETING":
            raise ReplayError(f"Kinesis stream {stream_name} is being deleted; run again once it is gone")
        if clock() >= deadline:
            raise ReplayError(
                f"timed out after {timeout_seconds:.0f} s waiting for Kinesis stream {stream_name} "
                f"to become ACTIVE (status {summary['StreamStatus']})"
            )
        sleep(poll_seconds)
        summary = client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    mode = summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
    info = {
        "stream_name": stream_name,
        "stream_arn": summary.get("StreamARN"),
        "stream_mode": mode,
        "open_shards": summary.get("OpenShardCount"),
        "created": created,
    }
    if not created and shards is not None and mode == "PROVISIONED" and info["open_shards"] != shards:
        log.warning(
            "Kinesis stream %s has %s open shards, not the %d configured: using it as it is",
            stream_name,
            info["open_shards"],
            shards,
        )
    log.info(
        "Kinesis stream %s is ACTIVE: %s, %s open shards%s",
        stream_name,
        mode,
        info["open_shards"],
        " (created now)" if created else "",
    )
    return info


@dataclass
class ReconcileReport:
    """Records read back from the stream against the events the replay sent.

    ``lost`` counts distinct event ids sent but never read; ``duplicates`` counts records read
    beyond one per id, including the source's own exact duplicates (``source_duplicates``).
    """

    expected_records: int
    expected_ids: int
    received_records: int
    received_ids: int
    lost: int
    duplicates: int
    source_duplicates: int
    unexpected_records: int
    lost_sample: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"expected {self.expected_records} records ({self.expected_ids} distinct event ids), "
            f"received {self.received_records} ({self.received_ids} distinct), lost {self.lost}, "
            f"duplicates {self.duplicates} (of which {self.source_duplicates} in the source), "
            f"unexpected {self.unexpected_records}"
        )


def read_stream(
    client: Any,
    stream_name: str,
    first_sequence: dict[str, str],
    *,
    limit: int = 10_000,
    max_empty_reads: int = 3,
    poll_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """Yield the data of each record from ``first_sequence[shard]`` on, for the shards listed.

    A shard is read until a call returns no records while at the tip (``MillisBehindLatest``
    0) ``max_empty_reads`` times, or until a closed shard ends.

    NOTE: child shards are not followed. When an on-demand stream splits a shard during the
    replay, the records written to the children after the split count as lost.
    """
    for shard_id, sequence in sorted(first_sequence.items()):
        iterator = client.get_shard_iterator(
            StreamName=stream_name,
            ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=sequence,
        )["ShardIterator"]
        empty_reads = 0
        while iterator and empty_reads < max_empty_reads:
            response = client.get_records(ShardIterator=iterator, Limit=limit)
            for record in response["Records"]:
                yield record["Data"]
            iterator = response.get("NextShardIterator")
            if response["Records"]:
                empty_reads = 0
            elif response.get("MillisBehindLatest", 0) == 0:
                empty_reads += 1
                if empty_reads < max_empty_reads:
                    sleep(poll_seconds)


def reconcile(expected: Iterable[Event], received: Iterable[bytes]) -> ReconcileReport:
    """Compare the events the replay sent with the record payloads read back, by event id.

    NOTE: the callers rebuild ``expected`` by reading the lake again. When the batch DAG writes
    silver for a day between the replay and this check, that day's ids change and the check
    reports its events as lost.
    """
    expected_counts = Counter(event.event_id for event in expected)
    received_counts: Counter[str] = Counter()
    unexpected = 0
    for data in received:
        event_id = json.loads(data).get("event_id")
        if event_id in expected_counts:
            received_counts[event_id] += 1
        else:
            unexpected += 1
    lost_ids = [event_id for event_id in expected_counts if event_id not in received_counts]
    received_records = sum(received_counts.values())
    expected_records = sum(expected_counts.values())
    return ReconcileReport(
        expected_records=expected_records,
        expected_ids=len(expected_counts),
        received_records=received_records,
        received_ids=len(received_counts),
        lost=len(lost_ids),
        duplicates=received_records - len(received_counts),
        source_duplicates=expected_records - len(expected_counts),
        unexpected_records=unexpected,
        lost_sample=sorted(lost_ids)[:10],
    )
