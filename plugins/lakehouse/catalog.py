"""The local catalog: a DuckDB file in the lake that plays the Glue Data Catalog's part.

``crawl`` registers a table as a view over its files and records the partitions it found,
as a Glue crawler does. Open the file with any DuckDB client to query ``raw_events`` and
``silver_events``. Writers take a file lock, because DuckDB allows one writing process.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lakehouse.gold import silver_view_sql
from lakehouse.landing import EXPECTED_COLUMNS

TABLES = ("raw", "silver")


def raw_view_sql(landing_root: str) -> str:
    """Return the view of the raw CSV files: every column as text, as the crawler reads them."""
    pattern = f"{landing_root.rstrip('/')}/event_date=*/*.csv*".replace("'", "''")
    columns = ", ".join(f"'{c}': 'VARCHAR'" for c in EXPECTED_COLUMNS)
    return (
        f"CREATE OR REPLACE VIEW raw_events AS SELECT * FROM read_csv('{pattern}', "
        f"header = true, columns = {{{columns}}}, auto_detect = false, null_padding = true, "
        "hive_partitioning = true, hive_types = {'event_date': DATE})"
    )


@dataclass(frozen=True)
class CrawlResult:
    """A table registered by one crawl: its view and the partitions found."""

    table: str
    view: str
    partitions: dict[str, int]


@contextmanager
def _locked(catalog_file: Path):
    catalog_file.parent.mkdir(parents=True, exist_ok=True)
    with open(catalog_file.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def crawl(lake_root: Path, table: str) -> CrawlResult:
    """Register ``raw_events`` or ``silver_events`` and its partitions in the catalog file."""
    import duckdb

    if table == "raw":
        root = lake_root / "landing" / "events"
        view, view_sql, pattern = "raw_events", raw_view_sql(str(root)), "*.csv*"
    elif table == "silver":
        root = lake_root / "silver" / "events"
        view, view_sql, pattern = "silver_events", silver_view_sql(str(root)), "*.parquet"
    else:
        raise ValueError(f"invalid table {table!r}: expected one of {', '.join(TABLES)}")

    partitions = {
        p.name.split("=", 1)[1]: sum(f.stat().st_size for f in p.glob(pattern))
        for p in sorted(root.glob("event_date=*"))
        if p.is_dir() and any(p.glob(pattern))
    }
    if not partitions:
        raise FileNotFoundError(f"no {table} partitions to register under {root}")
    catalog_file = lake_root / "catalog" / "lakehouse.duckdb"
    with _locked(catalog_file), duckdb.connect(str(catalog_file)) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute(view_sql)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS partitions (table_name VARCHAR, event_date DATE, "
            "location VARCHAR, bytes BIGINT, registered_at TIMESTAMP, "
            "PRIMARY KEY (table_name, event_date))"
        )
        connection.executemany(
            "INSERT OR REPLACE INTO partitions VALUES (?, ?, ?, ?, now())",
            [(view, day, str(root / f"event_date={day}"), size) for day, size in partitions.items()],
        )
    return CrawlResult(table=table, view=view, partitions=partitions)
