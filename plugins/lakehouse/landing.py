"""The landing zone: the header contract of raw files, and the command that lands them.

A raw Kaggle file (CSV or gzip, any size) is streamed line by line and split by the date of
``event_time`` into ``landing/events/event_date=<day>/<source name>.csv[.gz]``, each with the
expected header. Landing the same file again replaces the same objects, so it is safe to repeat.
Lines whose date cannot be read go to ``quarantine/landing/<source name>.csv`` with a reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

EXPECTED_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
EXPECTED_HEADER = ",".join(EXPECTED_COLUMNS)
# Enough for the header and the first data row of any real file, which is under 300 bytes.
HEADER_PROBE_BYTES = 64 * 1024
_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}")


class LandingError(ValueError):
    """A landing file breaks the contract: empty, or without the expected header."""


def is_raw_file(name: str) -> bool:
    return name.endswith((".csv", ".csv.gz")) and not name.startswith((".", "_"))


def _decode_first_lines(prefix: bytes, name: str) -> list[str]:
    if name.endswith(".gz"):
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(prefix)) as stream:
                prefix = stream.read(HEADER_PROBE_BYTES)
        except EOFError:
            # A gzip member cut by the probe limit still yields its first bytes through read1.
            with gzip.GzipFile(fileobj=io.BytesIO(prefix)) as stream:
                prefix = stream.read1(HEADER_PROBE_BYTES)
        except OSError as error:
            raise LandingError(f"{name}: not a readable gzip file ({error})") from error
    text = prefix.decode("utf-8", errors="replace").lstrip("\ufeff")
    return text.splitlines()[:2]


def check_header(prefix: bytes, name: str) -> None:
    """Check the first bytes of a landing file: expected header, then at least one row.

    :param prefix: the first bytes of the file, at most ``HEADER_PROBE_BYTES`` are needed.
    :param name: the file's path or key, used in the error message.
    :raises LandingError: the file is empty, has no header, another header, or no rows.
    """
    if not prefix:
        raise LandingError(f"{name}: file is empty; expected the header {EXPECTED_HEADER!r}")
    lines = _decode_first_lines(prefix, name)
    first = lines[0].strip() if lines else ""
    if first != EXPECTED_HEADER:
        raise LandingError(
            f"{name}: invalid header {first[:200]!r}; expected {EXPECTED_HEADER!r}. "
            "Land raw files with `make land FILE=...` (lakehouse.cli land), which adds the header."
        )
    if len(lines) < 2 or not lines[1].strip():
        raise LandingError(f"{name}: file has the header but no rows")


def read_prefix(path: Path, size: int = HEADER_PROBE_BYTES) -> bytes:
    with path.open("rb") as stream:
        return stream.read(size)


# Hadoop's path parser, which Spark and Glue read through, rejects these in a file name.
_UNREADABLE_NAME = re.compile(r"[:{}\[\]*?\\]")


def check_name(name: str) -> None:
    """Reject a landing file name that Spark cannot open."""
    bad = sorted(set(_UNREADABLE_NAME.findall(name)))
    if bad:
        raise LandingError(
            f"{name}: invalid file name, Spark cannot read a name with {' '.join(bad)}; rename it"
        )


def check_gzip(path: Path) -> None:
    """Read a whole gzip file to find truncation or corruption before Spark does."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise LandingError(f"{path}: truncated or corrupt gzip ({error}); land the file again") from error


def ignored_files(day_dir: Path) -> list[Path]:
    """Return the entries of a day's folder that the pipeline does not read."""
    if not day_dir.is_dir():
        return []
    return sorted(p for p in day_dir.iterdir() if not (p.is_file() and is_raw_file(p.name)))


def landing_files(day_dir: Path) -> list[Path]:
    if not day_dir.is_dir():
        return []
    return sorted(p for p in day_dir.iterdir() if p.is_file() and is_raw_file(p.name))


def count_rows(path: Path) -> int:
    """Count the event rows of a landing file: non-blank lines other than the header.

    Lines are split as the Glue script splits them: at LF only, without one trailing CR and a
    leading byte-order mark.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    header = EXPECTED_HEADER.encode()
    rows = 0
    with opener(path, "rb") as stream:
        for raw in stream:
            line = raw.removesuffix(b"\n").removesuffix(b"\r").removeprefix(b"\xef\xbb\xbf")
            if line.strip() and line != header:
                rows += 1
    return rows


@dataclass
class LandingReport:
    """Counts of one landed source file: rows in equal rows per day plus rows quarantined."""

    source: str
    has_header: bool
    rows_in: int = 0
    rows_by_day: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    files: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def rows_landed(self) -> int:
        return sum(self.rows_by_day.values())


def source_stem(source: Path) -> str:
    name = source.name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._") or "events"
    return safe


def _route_date(line: str) -> str | None:
    match = _DATE_PREFIX.match(line)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1)).isoformat()
    except ValueError:
        return None


class _PartialFiles:
    """Output files written under a hidden temporary name, renamed into place only on success."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._files: dict[Path, tuple[Path, IO[bytes]]] = {}

    def open(self, final: Path, compress: bool) -> IO[bytes]:
        if final not in self._files:
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(f".{final.name}.partial")
            opener = gzip.open if compress else open
            self._files[final] = (partial, self._stack.enter_context(opener(partial, "wb")))
        return self._files[final][1]

    def __contains__(self, final: Path) -> bool:
        return final in self._files

    def commit(self) -> list[Path]:
        for _partial, stream in self._files.values():
            stream.close()
        for final, (partial, _stream) in self._files.items():
            os.replace(partial, final)
        return list(self._files)

    def discard(self) -> None:
        for partial, stream in self._files.values():
            stream.close()
            partial.unlink(missing_ok=True)


def land_file(source: Path, lake_root: Path, *, compress: bool | None = None) -> LandingReport:
    """Split a raw events file by event date into the landing zone of a local lake.

    The source is read as a stream, so its size is bounded by the disk, not by memory.
    Each output is written under a temporary name and renamed when the whole source is read.
    A line that is not UTF-8 text, or whose date cannot be read, goes to quarantine.

    :param compress: write ``.csv.gz``; by default, when the source is gzip.
    :raises LandingError: the file is empty, truncated or corrupt gzip, or its first line is
        neither the header nor an event row.
    """
    stem = source_stem(source)
    with source.open("rb") as probe:
        is_gzip = probe.read(2) == b"\x1f\x8b"
    compress = is_gzip if compress is None else compress
    suffix = ".csv.gz" if compress else ".csv"
    quarantine_file = lake_root / "quarantine" / "landing" / f"{stem}.csv"
    report: LandingReport | None = None
    quarantine_text: io.TextIOWrapper | None = None
    quarantine: Any = None
    with ExitStack() as stack:
        outputs = _PartialFiles(stack)

        def reject(line_number: int, reason: str, line: str) -> None:
            nonlocal quarantine_text, quarantine
            if quarantine_text is None:
                binary = outputs.open(quarantine_file, False)
                quarantine_text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
                quarantine = csv.writer(quarantine_text)
                quarantine.writerow(["source_file", "line_number", "reason", "line"])
            quarantine.writerow([source.name, line_number, reason, line])
            report.quarantined += 1

        try:
            opener = gzip.open if is_gzip else open
            stream = stack.enter_context(opener(source, "rb"))
            for line_number, raw in enumerate(stream, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    valid_text = True
                except UnicodeDecodeError:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    valid_text = False
                if report is None:
                    line = line.lstrip("\ufeff")
                    if not line.strip():
                        continue
                    has_header = line.strip() == EXPECTED_HEADER
                    if not has_header and _route_date(line) is None:
                        raise LandingError(
                            f"{source}: the first line {line[:200]!r} is neither the header "
                            f"{EXPECTED_HEADER!r} nor an event row"
                        )
                    report = LandingReport(source=str(source), has_header=has_header)
                    if has_header:
                        continue
                if not line.strip():
                    continue
                report.rows_in += 1
                day = _route_date(line)
                if not valid_text:
                    reject(line_number, "not UTF-8 text: the row has bytes of another encoding", line)
                elif day is None:
                    reject(line_number, "event_time does not start with a date", line)
                else:
                    final = lake_root / "landing" / "events" / f"event_date={day}" / f"{stem}{suffix}"
                    if final not in outputs:
                        outputs.open(final, compress).write(EXPECTED_HEADER.encode() + b"\n")
                    outputs.open(final, compress).write(line.encode("utf-8") + b"\n")
                    report.rows_by_day[day] += 1
            if report is None:
                raise LandingError(f"{source}: file is empty; expected the header {EXPECTED_HEADER!r}")
            if quarantine_text is not None:
                # Detach so that the wrapper's buffer is written and the binary file stays open.
                quarantine_text.flush()
                quarantine_text.detach()
            written = outputs.commit()
        except (EOFError, OSError, zlib.error) as error:
            outputs.discard()
            if isinstance(error, OSError) and not is_gzip:
                raise
            raise LandingError(
                f"{source}: cannot read the gzip data ({error}); the file is truncated or corrupt, "
                "so download or copy it again"
            ) from error
        except BaseException:
            outputs.discard()
            raise
    if quarantine_text is None:
        quarantine_file.unlink(missing_ok=True)
    report.files = [str(p) for p in written if p != quarantine_file]
    report.removed = _remove_replaced(lake_root, stem, {Path(f) for f in report.files})
    return report


def _remove_replaced(lake_root: Path, stem: str, written: set[Path]) -> list[str]:
    """Remove this source's earlier landing files that this landing did not write again.

    They are the same file with the other compression, or days that a corrected source no
    longer has; either would be read twice or keep rows the source dropped.
    """
    removed = []
    for path in sorted((lake_root / "landing" / "events").glob(f"event_date=*/{stem}.csv*")):
        if path.name in (f"{stem}.csv", f"{stem}.csv.gz") and path not in written:
            path.unlink()
            removed.append(str(path))
    return removed
