"""Benchmark: the Glue script's raw-to-silver on local Spark against the same work on DuckDB.

Both engines read the same landing day folder (default 10 million generated rows) and write
silver and quarantine Parquet. Both split each line into nine fields, turn empty strings into
NULL, type the fields by the same patterns, give one reject reason per bad row, drop exact
duplicates and derive event_id, event_hour, day_of_week and category_l1..l3. The DuckDB version is written in
this file for the comparison only; the pipeline runs the Glue script. The row counts of both
are compared, so a faster but different transformation shows up. Goal: Spark at most 5 times
DuckDB's time.

    .venv/bin/python bench/spark_vs_duckdb.py
    .venv/bin/python bench/spark_vs_duckdb.py --rows 50000 --json spark_vs_duckdb.json
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import common

GOAL_RATIO = 5.0


def duckdb_sql(landing_glob: str, day: date, silver_dir: Path, quarantine_dir: Path) -> list[str]:
    """Return the DuckDB statements of raw to silver for one day, by the Glue script's rules.

    NOTE: fields are split on every comma, because DuckDB's RE2 regexes have no lookahead. The
    Glue script skips commas inside double quotes, so the two agree only on files without
    double quotes, such as the Kaggle files and the generator's.
    """
    import raw_to_silver as glue

    def field(index: int) -> str:
        raw = f"trim(fields[{index + 1}])"
        return f"nullif(regexp_replace({raw}, '^\"(.*)\"$', '\\1'), '') AS {glue.EXPECTED_COLUMNS[index]}"

    def invalid(column: str, expected: str) -> str:
        return f"'invalid {column} ''' || coalesce({column}, '') || ''': expected {expected}'"

    def bad_id(column: str) -> str:
        return (
            f"NOT coalesce(regexp_full_match({column}, '{glue.INTEGER_PATTERN}'), false) "
            f"OR try_cast({column} AS BIGINT) IS NULL"
        )

    fields = ",\n".join(field(i) for i in range(len(glue.EXPECTED_COLUMNS)))
    types = "', '".join(glue.EVENT_TYPES)
    event_time = "try_strptime(substr(event_time, 1, 19), '%Y-%m-%d %H:%M:%S')"
    reason = f"""
        CASE
            WHEN field_count <> 9 THEN 'wrong field count: expected 9, found ' || field_count
            WHEN NOT coalesce(regexp_full_match(event_time, '{glue.EVENT_TIME_PATTERN}'), false)
                OR {event_time} IS NULL THEN {invalid("event_time", "''YYYY-MM-DD HH:MM:SS UTC''")}
            WHEN NOT coalesce(event_type IN ('{types}'), false)
                THEN {invalid("event_type", "one of " + ", ".join(glue.EVENT_TYPES))}
            WHEN {bad_id("product_id")} THEN {invalid("product_id", "a 64-bit integer")}
            WHEN {bad_id("category_id")} THEN {invalid("category_id", "a 64-bit integer")}
            WHEN NOT coalesce(regexp_full_match(price, '{glue.PRICE_PATTERN}'), false)
                OR try_cast(price AS DECIMAL(12, 2)) IS NULL
                THEN {invalid("price", "a decimal number with at most 2 decimal places")}
            WHEN try_cast(price AS DECIMAL(12, 2)) < 0 THEN {invalid("price", "a price >= 0")}
            WHEN {bad_id("user_id")} THEN {invalid("user_id", "a 64-bit integer")}
            WHEN CAST({event_time} AS DATE) <> DATE '{day.isoformat()}'
                THEN 'event_time ''' || event_time || ''' is outside the partition event_date={day.isoformat()}'
        END"""
    canonical = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in glue.EXPECTED_COLUMNS)
    return [
        "SET TimeZone = 'UTC'",
        f"""
        CREATE TEMP TABLE parsed AS
        WITH lines AS (
            SELECT regexp_replace(line, '\\r$', '') AS line, filename AS source_file
            FROM read_csv('{landing_glob}', columns = {{'line': 'VARCHAR'}}, header = false,
                delim = '\\x1f', quote = '', escape = '', filename = true, auto_detect = false)
        ),
        events AS (
            SELECT line, source_file, string_split(line, ',') AS fields
            FROM lines
            WHERE trim(line) <> '' AND line <> '{glue.HEADER_LINE}'
        ),
        named AS (
            SELECT line, source_file, len(fields) AS field_count, {fields}
            FROM events
        )
        SELECT
            line, source_file, {reason} AS reject_reason,
            {event_time} AS event_time, event_type,
            try_cast(product_id AS BIGINT) AS product_id,
            try_cast(category_id AS BIGINT) AS category_id,
            category_code, brand,
            try_cast(price AS DECIMAL(12, 2)) AS price,
            try_cast(user_id AS BIGINT) AS user_id,
            user_session
        FROM named
        """,
        f"""
        COPY (
            SELECT source_file, line, reject_reason FROM parsed WHERE reject_reason IS NOT NULL
        ) TO '{quarantine_dir}/part-0.parquet' (FORMAT parquet, COMPRESSION snappy)
        """,
        f"""
        COPY (
            WITH valid AS (
                SELECT DISTINCT {", ".join(glue.EXPECTED_COLUMNS)}
                FROM parsed WHERE reject_reason IS NULL
            )
            SELECT
                substr(sha256(concat_ws(',', {canonical})), 1, 32) AS event_id,
                event_time, event_type, product_id, category_id, category_code,
                nullif(split_part(category_code, '.', 1), '') AS category_l1,
                nullif(split_part(category_code, '.', 2), '') AS category_l2,
                nullif(regexp_extract(category_code, '^[^.]*\\.[^.]*\\.(.*)$', 1), '') AS category_l3,
                brand, price, user_id, user_session,
                hour(event_time) AS event_hour,
                isodow(event_time) AS day_of_week
            FROM valid
        ) TO '{silver_dir}/part-0.parquet' (FORMAT parquet, COMPRESSION snappy)
        """,
    ]


def run_duckdb(landing_dir: Path, day: date, output: Path) -> tuple[float, int, int]:
    import duckdb

    silver_dir = output / "silver" / f"event_date={day.isoformat()}"
    quarantine_dir = output / "quarantine" / f"event_date={day.isoformat()}"
    silver_dir.mkdir(parents=True)
    quarantine_dir.mkdir(parents=True)
    started = time.monotonic()
    connection = duckdb.connect(":memory:")
    try:
        for statement in duckdb_sql(str(landing_dir / "*.csv*"), day, silver_dir, quarantine_dir):
            connection.execute(statement)
    finally:
        connection.close()
    seconds = time.monotonic() - started
    counter = duckdb.connect()
    silver = counter.execute(f"SELECT COUNT(*) FROM read_parquet('{silver_dir}/*.parquet')").fetchone()[0]
    quarantined = counter.execute(
        f"SELECT COUNT(*) FROM read_parquet('{quarantine_dir}/*.parquet')"
    ).fetchone()[0]
    return seconds, silver, quarantined


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="events in the landing day folder")
    parser.add_argument(
        "--spark-master", default="local[*]", help="Spark master of the local run (default local[*])"
    )
    parser.add_argument(
        "--duplicate-rate", type=float, default=0.001, help="share of exact duplicate rows injected"
    )
    common.add_common_arguments(parser)
    args = parser.parse_args()

    lake, temporary = common.lake_directory(args)
    try:
        import raw_to_silver as glue

        from lakehouse.generator import GeneratorSettings, generate_days
        from lakehouse.settings import Lake
        from lakehouse.targets.local import local_spark_session

        # A day's volume is events_per_day times its weekday's weight, so events_per_day is
        # scaled for Monday 2019-10-07 to put about --rows events in the folder.
        day = date(2019, 10, 7)
        settings = GeneratorSettings(seed=args.seed, events_per_day=1, duplicate_rate=args.duplicate_rate)
        settings = GeneratorSettings(
            seed=args.seed,
            events_per_day=max(1, round(args.rows / settings.day_volume(day))),
            duplicate_rate=args.duplicate_rate,
            cut_last_row=True,
        )
        started = time.monotonic()
        (report,) = generate_days(day, day, settings, lake_root=lake)
        generation_seconds = time.monotonic() - started
        landing_dir = report.path.parent

        started = time.monotonic()
        spark = local_spark_session(args.spark_master)
        spark_start_seconds = time.monotonic() - started
        local_lake = Lake(str(lake))
        options = {
            "landing_path": local_lake.landing_day(day.isoformat()),
            "silver_path": local_lake.silver_events,
            "quarantine_path": local_lake.quarantine_events,
            "metrics_path": local_lake.metrics,
            "event_date": day.isoformat(),
        }
        started = time.monotonic()
        metrics = glue.run(spark, options)
        spark_seconds = time.monotonic() - started
        spark.stop()

        duckdb_seconds, duck_silver, duck_quarantined = run_duckdb(landing_dir, day, lake / "duckdb")
    finally:
        if temporary:
            common.cleanup(lake)

    same = (duck_silver, duck_quarantined) == (metrics["silver_rows"], metrics["quarantined_rows"])
    ratio = spark_seconds / duckdb_seconds
    common.print_table(
        "Raw to silver: Spark (Glue script) against DuckDB",
        [
            ("rows in", int(metrics["rows_in"])),
            ("generation s (not compared)", generation_seconds),
            ("Spark session start s (not compared)", spark_start_seconds),
            (f"Spark {args.spark_master} s", spark_seconds),
            ("DuckDB s", duckdb_seconds),
            ("ratio Spark / DuckDB", ratio),
            (f"goal: ratio <= {GOAL_RATIO:.0f}", "met" if ratio <= GOAL_RATIO else "not met"),
            ("silver rows Spark / DuckDB", f"{metrics['silver_rows']} / {duck_silver}"),
            ("quarantined Spark / DuckDB", f"{metrics['quarantined_rows']} / {duck_quarantined}"),
            ("same counts", "yes" if same else "NO: the transformations differ"),
        ],
    )
    common.write_json(
        args.json,
        {
            "benchmark": "spark_vs_duckdb",
            "rows_in": metrics["rows_in"],
            "spark_master": args.spark_master,
            "spark_seconds": spark_seconds,
            "spark_start_seconds": spark_start_seconds,
            "duckdb_seconds": duckdb_seconds,
            "ratio": ratio,
            "goal_ratio": GOAL_RATIO,
            "silver_rows": {"spark": metrics["silver_rows"], "duckdb": duck_silver},
            "quarantined_rows": {"spark": metrics["quarantined_rows"], "duckdb": duck_quarantined},
        },
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
