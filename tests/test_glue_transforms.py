"""The Glue script's transforms on small DataFrames, and one run on files."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import raw_to_silver as job

pytestmark = pytest.mark.spark

DAY = date(2019, 10, 1)
GOOD = (
    "2019-10-01 02:15:07 UTC,cart,1004237,2053013555631882655,electronics.smartphone,apple,"
    "1081.98,535871217,c6bd7419-2748-4c56-95b4-8cec9ff8b80d"
)


def parse(spark, lines: list[str], day: date = DAY):
    frame = spark.createDataFrame(
        [(line, "file:///landing/a.csv") for line in lines], "line string, source_file string"
    )
    return job.parse_events(job.split_fields(frame), day)


def reasons(spark, lines: list[str]) -> list[str | None]:
    return [row["reject_reason"] for row in parse(spark, lines).collect()]


def test_parse_types_valid_row(spark):
    row = parse(spark, [GOOD]).collect()[0]
    assert row["reject_reason"] is None
    assert row["event_time"] == datetime(2019, 10, 1, 2, 15, 7)
    assert row["event_type"] == "cart"
    assert row["product_id"] == 1004237
    assert row["category_id"] == 2053013555631882655
    assert row["price"] == Decimal("1081.98")
    assert row["user_id"] == 535871217


def test_parse_empty_strings_become_null(spark):
    line = "2019-10-01 00:00:01 UTC,view,17200506,2053013559792632471,,,543.10,519107250,"
    row = parse(spark, [line]).collect()[0]
    assert row["reject_reason"] is None
    assert row["category_code"] is None
    assert row["brand"] is None
    assert row["user_session"] is None


def test_parse_quoted_field_with_comma(spark):
    line = '2019-10-01 00:00:01 UTC,view,1,2,"kids,toys",lego,5.00,3,s'
    row = parse(spark, [line]).collect()[0]
    assert row["reject_reason"] is None
    assert row["category_code"] == "kids,toys"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (GOOD.rsplit(",", 1)[0], "wrong field count: expected 9, found 8"),
        (GOOD + ",extra", "wrong field count: expected 9, found 10"),
        (
            GOOD.replace("2019-10-01 02:15:07 UTC", "2019-10-01T02:15"),
            "invalid event_time '2019-10-01T02:15'",
        ),
        (GOOD.replace("2019-10-01 02:15:07", "2019-13-01 02:15:07"), "invalid event_time"),
        (GOOD.replace(",cart,", ",wishlist,"), "invalid event_type 'wishlist'"),
        (GOOD.replace("2053013555631882655", "2.05E+18"), "invalid category_id '2.05E+18'"),
        (GOOD.replace("2053013555631882655", "99999999999999999999"), "invalid category_id"),
        (GOOD.replace(",1004237,", ",1004237.0,"), "invalid product_id '1004237.0'"),
        (GOOD.replace("1081.98", "-1.00"), "invalid price '-1.00': expected a price >= 0"),
        (GOOD.replace("1081.98", "12,5"), "wrong field count"),
        (GOOD.replace("1081.98", "1.234"), "invalid price '1.234'"),
        (GOOD.replace(",535871217,", ",,"), "invalid user_id ''"),
        (
            GOOD.replace("2019-10-01 02:15:07", "2019-10-02 00:00:00"),
            "is outside the partition event_date=2019-10-01",
        ),
    ],
)
def test_parse_rejects_with_reason(spark, line, expected):
    (reason,) = reasons(spark, [line])
    assert reason is not None
    assert expected in reason


def test_deduplicate_drops_exact_copies_only(spark):
    other_price = GOOD.replace("1081.98", "1081.99")
    silver = job.to_silver(parse(spark, [GOOD, GOOD, GOOD, other_price])).collect()
    assert len(silver) == 2
    assert sorted(r["price"] for r in silver) == [Decimal("1081.98"), Decimal("1081.99")]


def test_derive_columns_hour_weekday_levels(spark):
    line = GOOD.replace("electronics.smartphone", "appliances.kitchen.washer.front")
    row = job.to_silver(parse(spark, [line])).collect()[0]
    assert row["event_hour"] == 2
    # 2019-10-01 was a Tuesday: ISO day 2.
    assert row["day_of_week"] == 2
    assert row["category_l1"] == "appliances"
    assert row["category_l2"] == "kitchen"
    assert row["category_l3"] == "washer.front"
    assert len(row["event_id"]) == 32


def test_event_id_stable_and_distinct(spark):
    first = job.to_silver(parse(spark, [GOOD])).collect()[0]["event_id"]
    again = job.to_silver(parse(spark, [GOOD])).collect()[0]["event_id"]
    other = job.to_silver(parse(spark, [GOOD.replace("02:15:07", "02:15:08")])).collect()[0]["event_id"]
    assert first == again
    assert first != other


def test_silver_columns_in_contract_order(spark):
    assert tuple(job.to_silver(parse(spark, [GOOD])).columns) == job.SILVER_COLUMNS


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())


def _options(root: Path, day: date = DAY) -> dict[str, str]:
    return {
        "landing_path": str(root / "landing" / "events" / f"event_date={day}"),
        "silver_path": str(root / "silver" / "events"),
        "quarantine_path": str(root / "quarantine" / "events"),
        "metrics_path": str(root / "metrics" / "raw_to_silver"),
        "event_date": day.isoformat(),
    }


def test_run_counts_and_overwrites_only_its_day(spark, tmp_path):
    header = job.HEADER_LINE
    cut_off = GOOD.rsplit(",", 1)[0]
    damaged = GOOD.replace("2053013555631882655", "2.05E+18")
    # CRLF line ends and no final newline, as in the real Kaggle file.
    body = "\r\n".join([header, GOOD, GOOD, damaged, GOOD.replace("cart", "view"), cut_off])
    _write(tmp_path / "landing/events/event_date=2019-10-01/a.csv", body)
    _write(tmp_path / "landing/events/event_date=2019-10-01/b.csv", header + "\n\n")
    other_day = tmp_path / "silver/events/event_date=2019-09-30/part-0.parquet"
    _write(other_day, "must survive")

    metrics = job.run(spark, _options(tmp_path))

    assert metrics["rows_in"] == 5
    assert metrics["header_rows"] == 2
    assert metrics["silver_rows"] == 2
    assert metrics["quarantined_rows"] == 2
    assert metrics["duplicates_dropped"] == 1
    assert other_day.read_text() == "must survive"
    quarantine = spark.read.parquet(str(tmp_path / "quarantine/events/event_date=2019-10-01")).collect()
    assert sorted(r["line"] for r in quarantine) == sorted([damaged, cut_off])
    assert all(r["source_file"].endswith("a.csv") for r in quarantine)
    written = json.loads(
        next((tmp_path / "metrics/raw_to_silver/event_date=2019-10-01").glob("part-*")).read_text()
    )
    assert written == metrics


def test_run_twice_gives_same_silver(spark, tmp_path):
    _write(tmp_path / "landing/events/event_date=2019-10-01/a.csv", f"{job.HEADER_LINE}\n{GOOD}\n")
    job.run(spark, _options(tmp_path))
    first = sorted(spark.read.parquet(str(tmp_path / "silver/events")).collect())
    job.run(spark, _options(tmp_path))
    second = sorted(spark.read.parquet(str(tmp_path / "silver/events")).collect())
    assert first == second
    assert len(second) == 1


def test_parse_arguments_requires_every_path():
    with pytest.raises(SystemExit):
        job.parse_arguments(["--event_date", "2019-10-01"])
    options = job.parse_arguments(
        ["--JOB_NAME", "j", *[x for name in job.REQUIRED_ARGUMENTS for x in (f"--{name}", "v")]]
    )
    assert options["output_files"] == "1"
    assert options["event_date"] == "v"


def test_expected_columns_match_landing_contract():
    from lakehouse.landing import EXPECTED_COLUMNS

    assert job.EXPECTED_COLUMNS == EXPECTED_COLUMNS


def test_parse_quote_heavy_line_no_crash(spark):
    line = GOOD.replace(",apple,", ',"' + '""' * 3000 + '",')
    row = parse(spark, [line]).collect()[0]
    assert row["reject_reason"] is None
    assert row["brand"] == '"' * 3000


def test_parse_many_commas_quarantined(spark):
    (reason,) = reasons(spark, ["," * 40000])
    assert reason == "wrong field count: expected 9, found 40001"


def test_parse_doubled_quotes_unescaped(spark):
    row = parse(spark, [GOOD.replace(",apple,", ',"O""Neil",')]).collect()[0]
    assert row["brand"] == 'O"Neil'


def test_parse_unterminated_quote_reason(spark):
    (reason,) = reasons(spark, [GOOD.replace(",apple,", ',"apple,')])
    assert reason.startswith("malformed CSV row: expected 9 fields")


def test_parse_replacement_character_rejected(spark):
    (reason,) = reasons(spark, [GOOD.replace("apple", "caf\ufffd")])
    assert reason == "invalid UTF-8: the row has bytes that are not UTF-8 text"


def test_event_id_distinguishes_quoted_commas(spark):
    first = GOOD.replace("electronics.smartphone,apple", '"a,b",c')
    second = GOOD.replace("electronics.smartphone,apple", 'a,"b,c"')
    ids = {r["event_id"] for r in job.to_silver(parse(spark, [first, second])).collect()}
    assert len(ids) == 2


def test_run_line_rules_match_gate_count(spark, tmp_path):
    from lakehouse.landing import count_rows

    day = tmp_path / "landing/events/event_date=2019-10-01"
    body = "\ufeff" + job.HEADER_LINE + "\r\n" + GOOD + "\r\n\t\r\n" + GOOD.replace("apple", "app\rle") + "\n"
    _write(day / "a.csv", body)
    _write(day / "notes.txt", GOOD + "\n")
    _write(day / "b.CSV", GOOD + "\n")
    metrics = job.run(spark, _options(tmp_path))
    assert metrics["rows_in"] == 2
    assert metrics["rows_in"] == count_rows(day / "a.csv")


def test_run_truncated_gzip_names_folder(spark, tmp_path):
    import gzip

    day = tmp_path / "landing/events/event_date=2019-10-01"
    data = gzip.compress((job.HEADER_LINE + "\n" + (GOOD + "\n") * 20000).encode())
    _write(day / "a.csv.gz", "")
    (day / "a.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError) as error:
        job.run(spark, _options(tmp_path))
    assert str(day) in str(error.value)
    assert "truncated or corrupt" in str(error.value)
