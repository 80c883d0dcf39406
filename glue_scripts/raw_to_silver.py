"""Raw eCommerce events (Kaggle REES46 CSV) to typed, deduplicated silver Parquet.

The transforms are pure functions of DataFrames so that the same code runs on AWS Glue 5.1
(Spark 3.5), on local Spark and in unit tests. Only ``main`` depends on where it runs: under Glue it
reads the job arguments with ``getResolvedOptions`` and commits the job; elsewhere it parses the
same ``--name value`` arguments with argparse.

One run processes one event date:

* every non-blank line of the day's landing files is one row in;
* rows that cannot be parsed go to quarantine with a reason, keeping the raw line;
* exact duplicates among the parsed rows are dropped;
* the rest is written to ``<silver_path>/event_date=<day>/``, replacing only that day;
* the counts are written as one JSON object under ``metrics_path``, so that
  ``rows_in == silver_rows + quarantined_rows + duplicates_dropped`` can be checked.

This file must stay importable without Airflow or the ``lakehouse`` package: Glue runs it alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

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
HEADER_LINE = ",".join(EXPECTED_COLUMNS)
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
PRICE_TYPE = DecimalType(12, 2)
# RFC 4180 quoting, parsed by Spark's own CSV parser: a quoted field may hold a comma, and a
# doubled quote inside it is one quote. Rows with another field count land in _malformed.
RAW_SCHEMA = ", ".join(f"{name} string" for name in EXPECTED_COLUMNS) + ", _malformed string"
CSV_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": "_malformed",
    "escape": '"',
    "maxColumns": "64",
}
# A line with more commas than this is rejected before parsing: the CSV parser fails the whole
# job, not the row, past its maxColumns.
MAX_FIELDS = 48
LANDING_FILES = "{*.csv,*.csv.gz}"
EVENT_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( UTC)?$"
INTEGER_PATTERN = r"^[0-9]{1,19}$"
PRICE_PATTERN = r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$"

SILVER_COLUMNS = (
    "event_id",
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "category_l1",
    "category_l2",
    "category_l3",
    "brand",
    "price",
    "user_id",
    "user_session",
    "event_hour",
    "day_of_week",
)
REQUIRED_ARGUMENTS = (
    "landing_path",
    "silver_path",
    "quarantine_path",
    "metrics_path",
    "event_date",
)


def read_lines(spark: SparkSession, landing_path: str) -> DataFrame:
    """Read every non-blank line of the day's ``.csv`` and ``.csv.gz`` files, with its file.

    Lines end at LF only, so a stray CR inside a line stays in it; a CR before the LF and a
    byte-order mark at the start of a file are dropped. The data-quality gate counts lines the
    same way.
    """
    return (
        spark.read.option("lineSep", "\n")
        .option("pathGlobFilter", LANDING_FILES)
        .text(landing_path)
        .select(
            F.regexp_replace(F.regexp_replace("value", "\r$", ""), "^\ufeff", "").alias("line"),
            F.input_file_name().alias("source_file"),
        )
        .where(~F.col("line").rlike(r"^\s*$"))
    )


def drop_headers(lines: DataFrame) -> DataFrame:
    """Drop header lines: each landing file may start with one, and they are not events."""
    return lines.where(F.col("line") != HEADER_LINE)


def _field(name: str) -> Column:
    value = F.trim(F.col(f"parsed.{name}"))
    return F.when(value == "", F.lit(None)).otherwise(value)


def split_fields(lines: DataFrame) -> DataFrame:
    """Parse each line into the nine named string columns; empty strings become NULL.

    ``comma_fields`` is the number of comma-separated pieces, the field count when the line has
    no quotes. ``csv_error`` is set when the line does not parse into exactly nine fields.
    """
    comma_fields = F.size(F.split("line", ",", -1))
    # Too many commas: parse an empty string instead, because the parser would fail the job.
    parsable = F.when(comma_fields <= MAX_FIELDS, F.col("line")).otherwise(F.lit(""))
    with_parsed = lines.select(
        "line",
        "source_file",
        comma_fields.alias("comma_fields"),
        F.from_csv(parsable, RAW_SCHEMA, CSV_OPTIONS).alias("parsed"),
    )
    csv_error = F.when(F.col("comma_fields") > MAX_FIELDS, F.lit("fields")).when(
        F.col("parsed._malformed").isNotNull(), F.lit("fields")
    )
    return with_parsed.select(
        "line",
        "source_file",
        "comma_fields",
        csv_error.alias("csv_error"),
        *[_field(name).alias(name) for name in EXPECTED_COLUMNS],
    )


def _invalid(column: str, expected: str) -> Column:
    return F.concat(
        F.lit(f"invalid {column} '"),
        F.coalesce(F.col(column), F.lit("")),
        F.lit(f"': expected {expected}"),
    )


def parse_events(fields: DataFrame, event_date: date) -> DataFrame:
    """Type the string columns and add ``reject_reason``, NULL for a valid row.

    The first failed rule wins, so each rejected row carries exactly one reason.
    """
    event_time = F.to_timestamp(F.substring("event_time", 1, 19), "yyyy-MM-dd HH:mm:ss")
    # try_cast returns NULL on overflow whether or not ANSI mode is on.
    price = F.expr(f"try_cast(price AS {PRICE_TYPE.simpleString()})")
    ids = {name: F.expr(f"try_cast({name} AS BIGINT)") for name in ("product_id", "category_id", "user_id")}

    def bad_id(name: str) -> Column:
        return ~F.coalesce(F.col(name).rlike(INTEGER_PATTERN), F.lit(False)) | ids[name].isNull()

    expected_fields = len(EXPECTED_COLUMNS)
    reason = (
        F.when(
            F.col("line").contains("\ufffd"),
            F.lit("invalid UTF-8: the row has bytes that are not UTF-8 text"),
        )
        .when(
            F.col("csv_error").isNotNull() & ~F.col("line").contains('"'),
            F.concat(
                F.lit(f"wrong field count: expected {expected_fields}, found "),
                F.col("comma_fields").cast("string"),
            ),
        )
        .when(
            F.col("csv_error").isNotNull(),
            F.lit(
                f"malformed CSV row: expected {expected_fields} fields, with any quote inside a "
                "quoted field doubled"
            ),
        )
        .when(
            ~F.coalesce(F.col("event_time").rlike(EVENT_TIME_PATTERN), F.lit(False)) | event_time.isNull(),
            _invalid("event_time", "'YYYY-MM-DD HH:MM:SS UTC'"),
        )
        .when(
            ~F.coalesce(F.col("event_type").isin(*EVENT_TYPES), F.lit(False)),
            _invalid("event_type", "one of " + ", ".join(EVENT_TYPES)),
        )
        .when(bad_id("product_id"), _invalid("product_id", "a 64-bit integer"))
        .when(
            bad_id("category_id"),
            _invalid("category_id", "a 64-bit integer (a value like 2.05E+18 was damaged by a spreadsheet)"),
        )
        .when(
            ~F.coalesce(F.col("price").rlike(PRICE_PATTERN), F.lit(False)) | price.isNull(),
            _invalid("price", "a decimal number with at most 10 digits before the point and 2 after"),
        )
        .when(price < 0, _invalid("price", "a price >= 0"))
        .when(bad_id("user_id"), _invalid("user_id", "a 64-bit integer"))
        .when(
            F.to_date(event_time) != F.lit(event_date.isoformat()).cast("date"),
            F.concat(
                F.lit("event_time '"),
                F.col("event_time"),
                F.lit(f"' is outside the partition event_date={event_date.isoformat()}"),
            ),
        )
    )
    return fields.select(
        "line",
        "source_file",
        reason.alias("reject_reason"),
        event_time.alias("event_time"),
        "event_type",
        ids["product_id"].alias("product_id"),
        ids["category_id"].alias("category_id"),
        "category_code",
        "brand",
        price.alias("price"),
        ids["user_id"].alias("user_id"),
        "user_session",
    )


def quarantine_rows(parsed: DataFrame, event_date: date) -> DataFrame:
    """Return the rejected rows with their raw line, source file and reason."""
    return parsed.where(F.col("reject_reason").isNotNull()).select(
        "source_file",
        "line",
        "reject_reason",
        F.lit(event_date.isoformat()).cast("date").alias("landing_event_date"),
    )


def deduplicate(valid: DataFrame) -> DataFrame:
    """Drop exact duplicates: rows equal in all nine source columns."""
    return valid.dropDuplicates(list(EXPECTED_COLUMNS))


def derive_columns(events: DataFrame) -> DataFrame:
    """Add the stable event id, the hour, the ISO day of week and the category levels."""
    levels = F.split("category_code", r"\.", 3)
    # JSON keeps fields apart even when a value contains the separator, as a quoted comma can.
    canonical = F.to_json(F.struct(*EXPECTED_COLUMNS))
    return events.select(
        F.sha2(canonical, 256).substr(1, 32).alias("event_id"),
        "event_time",
        "event_type",
        "product_id",
        "category_id",
        "category_code",
        levels[0].alias("category_l1"),
        levels[1].alias("category_l2"),
        levels[2].alias("category_l3"),
        "brand",
        "price",
        "user_id",
        "user_session",
        F.hour("event_time").alias("event_hour"),
        # Spark's weekday() is 0 for Monday: ISO 8601 numbers Monday 1 to Sunday 7, as Trino does.
        (F.weekday("event_time") + 1).alias("day_of_week"),
    )


def to_silver(parsed: DataFrame) -> DataFrame:
    """Return the silver rows: valid, deduplicated and with the derived columns."""
    valid = parsed.where(F.col("reject_reason").isNull())
    # Derived before the shuffle of the deduplication, so that hashing the event ids runs on every
    # core: the stage after the shuffle is coalesced to the few output files. Exact duplicates
    # get equal derived columns, so the result is the same.
    return deduplicate(derive_columns(valid)).select(*SILVER_COLUMNS)


def partition_path(root: str, event_date: date) -> str:
    return f"{root.rstrip('/')}/event_date={event_date.isoformat()}"


def run(spark: SparkSession, options: dict[str, str]) -> dict[str, object]:
    """Transform one day from landing to silver and quarantine, and return its counts."""
    event_date = date.fromisoformat(options["event_date"])
    output_files = int(options.get("output_files") or 1)
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")

    lines = read_lines(spark, options["landing_path"])
    # A gzip file cannot be split, so a day landed as one .csv.gz is read by one task. Spreading
    # its lines over the cores before parsing, with the hashing moved before the shuffle in
    # to_silver, cut a 1.3 million row day from 55 s to 42 s on 2 cores (warm JVM, local Spark).
    parallelism = spark.sparkContext.defaultParallelism
    if lines.rdd.getNumPartitions() < parallelism:
        # Smaller partitions keep each task's cache block small as well.
        lines = lines.repartition(max(parallelism * 2, 16))
    lines = lines.persist()
    try:
        events = drop_headers(lines)
        parsed = parse_events(split_fields(events), event_date).persist()
        line_count = _count_or_explain(lines, options["landing_path"])
        rows_in = events.count()

        quarantined = quarantine_rows(parsed, event_date)
        # repartition, not coalesce: coalesce(1) would pull the parsing and caching of every row
        # into one task, on one core and in one cache block, which ran out of memory at 10
        # million rows. Only the few rejected rows cross this shuffle.
        quarantined.drop("landing_event_date").repartition(1).write.mode("overwrite").parquet(
            partition_path(options["quarantine_path"], event_date)
        )
        to_silver(parsed).coalesce(output_files).write.mode("overwrite").parquet(
            partition_path(options["silver_path"], event_date)
        )

        reasons = {
            row["reject_reason"]: row["count"]
            for row in parsed.where(F.col("reject_reason").isNotNull())
            .groupBy("reject_reason")
            .count()
            .collect()
        }
        quarantined_rows = sum(reasons.values())
        valid_rows = rows_in - quarantined_rows
        silver_rows = spark.read.parquet(partition_path(options["silver_path"], event_date)).count()
        parsed.unpersist()
    finally:
        lines.unpersist()

    metrics: dict[str, object] = {
        "event_date": event_date.isoformat(),
        "landing_path": options["landing_path"],
        "header_rows": line_count - rows_in,
        "rows_in": rows_in,
        "silver_rows": silver_rows,
        "quarantined_rows": quarantined_rows,
        "duplicates_dropped": valid_rows - silver_rows,
        # Keep the metrics file small: a damaged file can have one distinct reason per line.
        "reject_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:50]),
    }
    spark.createDataFrame([(json.dumps(metrics),)], "value string").coalesce(1).write.mode("overwrite").text(
        partition_path(options["metrics_path"], event_date)
    )
    return metrics


def _count_or_explain(lines: DataFrame, landing_path: str) -> int:
    """Count the lines, turning a read failure into an error that names the folder and the cause."""
    try:
        return lines.count()
    except Exception as error:
        # Spark's message for a damaged gzip names neither the file nor the likely fix.
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise RuntimeError(
            f"reading the landing files under {landing_path} failed: {detail}. A .csv.gz file there "
            "may be truncated or corrupt (check each with `gzip -t`), or a file name may contain ':'."
        ) from error


def parse_arguments(argv: list[str]) -> dict[str, str]:
    """Parse ``--name value`` job arguments, as Glue passes them, outside Glue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in REQUIRED_ARGUMENTS:
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--output_files", default="1")
    parser.add_argument("--JOB_NAME", default="raw_to_silver")
    options, _unknown = parser.parse_known_args(argv)
    return vars(options)


def main(argv: list[str] | None = None) -> dict[str, object]:
    argv = sys.argv[1:] if argv is None else argv
    try:
        from awsglue.context import GlueContext
        from awsglue.job import Job
        from awsglue.utils import getResolvedOptions
    except ImportError:
        GlueContext = None
    if GlueContext is None:
        # Outside Glue: local Spark, or a session the caller already started.
        spark = SparkSession.builder.appName("raw_to_silver").getOrCreate()
        return run(spark, parse_arguments(argv))

    from pyspark.context import SparkContext

    options = getResolvedOptions(["script", *argv], ["JOB_NAME", *REQUIRED_ARGUMENTS])
    glue_context = GlueContext(SparkContext.getOrCreate())
    job = Job(glue_context)
    job.init(options["JOB_NAME"], options)
    # getResolvedOptions has no optional arguments, so the one optional argument is read by hand.
    if "--output_files" in argv:
        options["output_files"] = argv[argv.index("--output_files") + 1]
    metrics = run(glue_context.spark_session, options)
    print(json.dumps(metrics))
    job.commit()
    return metrics


if __name__ == "__main__":
    main()
