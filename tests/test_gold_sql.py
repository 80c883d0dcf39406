"""Each gold SQL file on a small hand-made silver day, with expected values worked out by hand.

The fixture day, 2019-10-01 (a Tuesday), has eleven events:

    #   time   user session type              product category                brand  price
    1   00:10  u1   s1      view              p1      electronics.smartphone  apple  100.00
    2   00:11  u1   s1      cart              p1      electronics.smartphone  apple  100.00
    3   00:20  u1   s1      purchase          p1      electronics.smartphone  apple  100.00
    4   01:00  u2   s2      view              p2      computers.notebook      lenovo 500.00
    5   01:05  u2   s2      cart              p2      computers.notebook      lenovo 500.00
    6   01:30  u3   s3      view              p1      electronics.smartphone  apple  100.00
    7   02:00  u3   s4      view              p3      (none)                  (none)  20.00
    8   02:05  u3   s4      cart              p3      (none)                  (none)  20.00
    9   02:10  u3   s4      purchase          p1      electronics.smartphone  apple  100.00
    10  02:30  u4   s5      view              p2      computers.notebook      lenovo 500.00
    11  02:31  u4   s5      remove_from_cart  p2      computers.notebook      lenovo 500.00
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from lakehouse.gold import TranslationError, build_gold_local, plan_ctas, render_sql
from lakehouse.params import GoldParameters
from lakehouse.settings import GOLD_TABLES, PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "include" / "sql"
DAY = date(2019, 10, 1)
USERS = {"u1": 1, "u2": 2, "u3": 3, "u4": 4, "u9": 9}
PRODUCTS = {"p1": 101, "p2": 102, "p3": 103, "p9": 109}
SMARTPHONE, NOTEBOOK = "electronics.smartphone", "computers.notebook"
FIXTURE = [
    ("00:10", "u1", "s1", "view", "p1", SMARTPHONE, "apple", "100.00"),
    ("00:11", "u1", "s1", "cart", "p1", SMARTPHONE, "apple", "100.00"),
    ("00:20", "u1", "s1", "purchase", "p1", SMARTPHONE, "apple", "100.00"),
    ("01:00", "u2", "s2", "view", "p2", NOTEBOOK, "lenovo", "500.00"),
    ("01:05", "u2", "s2", "cart", "p2", NOTEBOOK, "lenovo", "500.00"),
    ("01:30", "u3", "s3", "view", "p1", SMARTPHONE, "apple", "100.00"),
    ("02:00", "u3", "s4", "view", "p3", None, None, "20.00"),
    ("02:05", "u3", "s4", "cart", "p3", None, None, "20.00"),
    ("02:10", "u3", "s4", "purchase", "p1", SMARTPHONE, "apple", "100.00"),
    ("02:30", "u4", "s5", "view", "p2", NOTEBOOK, "lenovo", "500.00"),
    ("02:31", "u4", "s5", "remove_from_cart", "p2", NOTEBOOK, "lenovo", "500.00"),
]

SILVER_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("event_type", pa.string()),
        ("product_id", pa.int64()),
        ("category_id", pa.int64()),
        ("category_code", pa.string()),
        ("category_l1", pa.string()),
        ("category_l2", pa.string()),
        ("category_l3", pa.string()),
        ("brand", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("user_id", pa.int64()),
        ("user_session", pa.string()),
        ("event_hour", pa.int32()),
        ("day_of_week", pa.int32()),
    ]
)


def write_silver(lake: Path, day: date, events: list[tuple]) -> None:
    """Write one silver day in the layout and types the Glue script writes."""
    rows = []
    for clock, user, session, kind, product, category, brand, price in events:
        hour, minute = (int(x) for x in clock.split(":"))
        at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
        levels = [*(category or "").split(".", 2), None, None, None]
        rows.append(
            {
                "event_id": hashlib.sha256(f"{at}{user}{kind}{product}".encode()).hexdigest()[:32],
                "event_time": at,
                "event_type": kind,
                "product_id": PRODUCTS[product],
                "category_id": 2053013555631882655,
                "category_code": category,
                "category_l1": levels[0] or None,
                "category_l2": levels[1] if category else None,
                "category_l3": levels[2] if category else None,
                "brand": brand,
                "price": Decimal(price),
                "user_id": USERS[user],
                "user_session": session,
                "event_hour": hour,
                "day_of_week": at.isoweekday(),
            }
        )
    out = lake / "silver" / "events" / f"event_date={day.isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SILVER_SCHEMA), out / "part-00000.parquet")


def read_gold(lake: Path, table: str) -> list[dict]:
    pattern = str(lake / "gold" / table / "event_date=*" / "*.parquet")
    if not list((lake / "gold" / table).glob("event_date=*/*.parquet")):
        return []
    cursor = duckdb.connect().execute(
        f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true) ORDER BY ALL"
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture
def fixture_lake(tmp_path: Path) -> Path:
    write_silver(tmp_path, DAY, FIXTURE)
    return tmp_path


def build(lake: Path, table: str, **overrides) -> list[dict]:
    build_gold_local(lake, SQL_DIR, table, GoldParameters(event_date=DAY, **overrides))
    return read_gold(lake, table)


def test_daily_unique_visitors_by_hand(fixture_lake):
    (row,) = build(fixture_lake, "daily_unique_visitors")
    assert row["event_date"] == DAY
    assert row["unique_visitors"] == 4
    assert row["unique_sessions"] == 5
    assert row["events"] == 11
    assert row["views"] == 5
    assert row["carts"] == 3
    assert row["removals_from_cart"] == 1
    assert row["purchases"] == 2
    assert row["purchasing_visitors"] == 2
    assert row["revenue"] == Decimal("200.00")


def test_cart_abandonment_by_hand(fixture_lake):
    (row,) = build(fixture_lake, "cart_abandonment")
    # Cart 2 is bought at event 3; cart 5 is never bought; cart 8 (p3) is not, u3 buys p1.
    assert row["cart_events"] == 3
    assert row["purchased_carts"] == 1
    assert row["abandoned_carts"] == 2
    assert row["carted_users"] == 3
    assert row["abandoning_users"] == 2
    assert row["abandonment_rate"] == pytest.approx(2 / 3)
    assert row["abandoned_value"] == Decimal("520.00")
    assert row["window_hours"] == 24
    # No later day is landed, so every 24-hour window is still open.
    assert row["data_through"] == datetime(2019, 10, 2)
    assert row["open_windows"] == 3
    assert row["is_final"] is False


def test_cart_abandonment_window_bounds(tmp_path):
    write_silver(
        tmp_path,
        DAY,
        [
            ("10:00", "u1", "s1", "cart", "p1", SMARTPHONE, "apple", "100.00"),
            ("11:00", "u1", "s1", "purchase", "p1", SMARTPHONE, "apple", "100.00"),
            ("10:00", "u2", "s2", "cart", "p2", NOTEBOOK, "lenovo", "500.00"),
            ("09:59", "u2", "s2", "purchase", "p2", NOTEBOOK, "lenovo", "500.00"),
            ("12:00", "u2", "s2", "purchase", "p2", NOTEBOOK, "lenovo", "500.00"),
        ],
    )
    (one_hour,) = build(tmp_path, "cart_abandonment", window_hours=1)
    # u1 buys exactly at the window's end: bought. u2 buys before the cart and 2 h after.
    assert one_hour["purchased_carts"] == 1
    assert one_hour["abandoned_carts"] == 1
    assert one_hour["abandoned_value"] == Decimal("500.00")
    (three_hours,) = build(tmp_path, "cart_abandonment", window_hours=3)
    assert three_hours["purchased_carts"] == 2
    assert three_hours["abandoned_carts"] == 0


def test_cart_abandonment_corrected_by_next_day(tmp_path):
    next_day = DAY + timedelta(days=1)
    write_silver(tmp_path, DAY, [("23:00", "u9", "s9", "cart", "p9", SMARTPHONE, "apple", "50.00")])
    build_gold_local(tmp_path, SQL_DIR, "cart_abandonment", GoldParameters(event_date=DAY))
    (provisional,) = read_gold(tmp_path, "cart_abandonment")
    assert provisional["abandoned_carts"] == 1
    assert provisional["is_final"] is False

    write_silver(tmp_path, next_day, [("10:00", "u9", "s9", "purchase", "p9", SMARTPHONE, "apple", "50.00")])
    build_gold_local(tmp_path, SQL_DIR, "cart_abandonment", GoldParameters(event_date=next_day))
    (corrected,) = read_gold(tmp_path, "cart_abandonment")
    assert corrected["event_date"] == DAY
    assert corrected["abandoned_carts"] == 0
    assert corrected["purchased_carts"] == 1
    assert corrected["data_through"] == datetime(2019, 10, 3)
    assert corrected["is_final"] is True


def test_top_categories_hourly_by_hand(fixture_lake):
    rows = build(fixture_lake, "top_categories_hourly")
    got = [
        (
            r["event_hour"],
            r["view_rank"],
            r["category_code"],
            r["views"],
            r["carts"],
            r["purchases"],
            r["revenue"],
            r["visitors"],
        )
        for r in rows
    ]
    assert got == [
        (0, 1, SMARTPHONE, 1, 1, 1, Decimal("100.00"), 1),
        # Hour 1 ties on views and purchases: the category code breaks the tie.
        (1, 1, NOTEBOOK, 1, 1, 0, Decimal("0.00"), 1),
        (1, 2, SMARTPHONE, 1, 0, 0, Decimal("0.00"), 1),
        (2, 1, NOTEBOOK, 1, 0, 0, Decimal("0.00"), 1),
        (2, 2, SMARTPHONE, 0, 0, 1, Decimal("100.00"), 1),
    ]


def test_top_categories_weekday_by_hand(fixture_lake):
    rows = build(fixture_lake, "top_categories_weekday")
    got = [
        (
            r["day_of_week"],
            r["day_name"],
            r["view_rank"],
            r["category_code"],
            r["views"],
            r["carts"],
            r["purchases"],
            r["revenue"],
            r["visitors"],
        )
        for r in rows
    ]
    assert got == [
        # Both have 2 views; the smartphone ranks first on its 2 purchases.
        (2, "Tuesday", 1, SMARTPHONE, 2, 1, 2, Decimal("200.00"), 2),
        (2, "Tuesday", 2, NOTEBOOK, 2, 1, 0, Decimal("0.00"), 2),
    ]


def test_brand_marketing_rule_by_hand(fixture_lake):
    rows = {
        r["brand"]: r
        for r in build(fixture_lake, "brand_marketing", brand_min_views=2, brand_conversion_ratio=0.5)
    }
    assert sorted(rows) == ["apple", "lenovo"]
    # The day converts 2 purchases / 5 views = 0.4, so the bar is 0.5 * 0.4 = 0.2.
    assert rows["apple"]["day_conversion"] == pytest.approx(0.4)
    assert rows["apple"]["conversion_rate"] == pytest.approx(1.0)
    assert rows["apple"]["cart_to_purchase_rate"] == pytest.approx(2.0)
    assert rows["apple"]["needs_marketing"] is False
    assert rows["apple"]["view_rank"] == 1
    assert rows["lenovo"]["views"] == 2
    assert rows["lenovo"]["carts"] == 1
    assert rows["lenovo"]["purchases"] == 0
    assert rows["lenovo"]["revenue"] == Decimal("0.00")
    assert rows["lenovo"]["conversion_rate"] == pytest.approx(0.0)
    assert rows["lenovo"]["needs_marketing"] is True
    assert rows["lenovo"]["view_rank"] == 2


def test_brand_marketing_min_views_skips(fixture_lake):
    rows = build(fixture_lake, "brand_marketing", brand_min_views=3)
    assert [r["needs_marketing"] for r in rows] == [False, False]
    assert all(r["marketing_reason"] == "not judged: fewer than 3 views" for r in rows)


def test_rerun_leaves_one_identical_copy(fixture_lake):
    for table in GOLD_TABLES:
        first = build(fixture_lake, table)
        second = build(fixture_lake, table)
        assert first == second, table
        files = list((fixture_lake / "gold" / table).rglob("*.parquet"))
        assert len(files) == 1, f"{table}: {files}"
    assert not any((fixture_lake / "gold" / "_runs").rglob("*.parquet"))


def test_rerun_removes_partition_no_longer_produced(fixture_lake):
    build(fixture_lake, "cart_abandonment")
    no_carts = [e for e in FIXTURE if e[3] != "cart"]
    write_silver(fixture_lake, DAY, no_carts)
    assert build(fixture_lake, "cart_abandonment") == []


def render(table: str, location: str = "s3://bucket/gold/_runs/t/x/") -> str:
    return render_sql(
        SQL_DIR,
        table,
        GoldParameters(event_date=DAY),
        ctas_table="ecommerce_lakehouse.t_stage",
        ctas_location=location,
        silver_table="ecommerce_lakehouse.silver_events",
    )


@pytest.mark.parametrize("table", GOLD_TABLES)
def test_sql_file_is_valid_trino(table):
    sql = render(table)
    statement = sqlglot.parse_one(sql, read="trino", error_level=ErrorLevel.RAISE)
    assert isinstance(statement, sqlglot.exp.Create)
    plan = plan_ctas(sql)
    assert plan.partitioned_by == ("event_date",)
    assert plan.file_format == "PARQUET"
    assert plan.location == "s3://bucket/gold/_runs/t/x/"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("format = 'PARQUET'", "format = 'ORC'"), "only PARQUET"),
        (
            ("format = 'PARQUET',", "format = 'PARQUET', bucketed_by = ARRAY['user_id'], bucket_count = 4,"),
            "unsupported CTAS property",
        ),
        (("write_compression = 'SNAPPY'", "write_compression = 'LZ4'"), "unsupported write_compression"),
        (
            (
                "    CAST(event_date AS DATE) AS event_date\n",
                "    CAST(event_date AS DATE) AS event_date, 1 AS extra\n",
            ),
            "partition columns",
        ),
    ],
)
def test_translation_fails_loudly(change, message):
    sql = render("daily_unique_visitors")
    assert change[0] in sql
    with pytest.raises(TranslationError, match=message):
        plan_ctas(sql.replace(change[0], change[1], 1))


def test_translation_rejects_two_statements():
    sql = render("daily_unique_visitors")
    with pytest.raises(TranslationError, match="exactly one"):
        plan_ctas(sql + ";\nDROP TABLE x")


def test_render_rejects_unsafe_location():
    with pytest.raises(ValueError, match="ctas_location"):
        render("daily_unique_visitors", location="s3://b/x'; DROP TABLE y; --")


def test_count_if_keeps_trino_semantics():
    plan = plan_ctas(render("daily_unique_visitors"))
    assert "COUNT_IF" not in plan.select_sql.upper()
    assert "COUNT(CASE WHEN" in plan.select_sql.upper()


def test_dashboard_day_without_carts(tmp_path):
    from lakehouse.dashboard import build_dashboard

    write_silver(tmp_path, DAY, [e for e in FIXTURE if e[3] != "cart"])
    for table in GOLD_TABLES:
        build(tmp_path, table)
    assert read_gold(tmp_path, "cart_abandonment") == []
    page = build_dashboard(tmp_path, DAY).read_text()
    assert "id='cart_abandonment'" in page
    assert "data-kpi='unique_visitors'>Unique visitors<b>4</b>" in page
