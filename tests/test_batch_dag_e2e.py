"""The whole batch DAG with ``dag.test()`` on the local target.

The gold numbers of the real Oct rows are checked against a computation from the raw CSV in
this file, written with the standard library only, so it shares no code with the pipeline.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from conftest import PROJECT_ROOT, SAMPLE_OCT

from lakehouse.landing import EXPECTED_HEADER, land_file
from lakehouse.settings import GOLD_TABLES

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

DAG_FILE = PROJECT_ROOT / "dags" / "ecommerce_batch_lakehouse.py"
OCT_1 = datetime(2019, 10, 1, tzinfo=UTC)
EVENT_TYPES = {"view", "cart", "remove_from_cart", "purchase"}


def query(sql: str):
    return duckdb.connect().execute(sql)


def load_dag():
    spec = importlib.util.spec_from_file_location("batch_dag_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_day(day: datetime = OCT_1, conf: dict | None = None):
    dag_run = load_dag().test(logical_date=day, run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return str(dag_run.state), states


def read_table(lake: Path, table: str) -> list[tuple]:
    pattern = str(lake / "gold" / table / "event_date=*" / "*.parquet")
    return query(f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true) ORDER BY ALL").fetchall()


def expected_from_raw(path: Path) -> dict:
    """Compute the day's figures from the raw CSV with plain Python."""
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert ",".join(rows[0]) == EXPECTED_HEADER
    data = [r for r in rows[1:] if any(field.strip() for field in r)]
    valid = [r for r in data if len(r) == 9 and r[1] in EVENT_TYPES]
    unique = list(dict.fromkeys(tuple(r) for r in valid))
    events = [
        {
            "time": datetime.strptime(r[0].removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S"),
            "type": r[1],
            "product": int(r[2]),
            "category": r[4] or None,
            "brand": r[5] or None,
            "price": Decimal(r[6]),
            "user": int(r[7]),
            "session": r[8] or None,
        }
        for r in unique
    ]
    purchases = defaultdict(list)
    for e in events:
        if e["type"] == "purchase":
            purchases[(e["user"], e["product"])].append(e["time"])
    carts = [e for e in events if e["type"] == "cart"]
    abandoned = [
        c
        for c in carts
        if not any(
            c["time"] <= t <= c["time"] + timedelta(hours=24) for t in purchases[(c["user"], c["product"])]
        )
    ]
    hourly = Counter((e["time"].hour, e["category"]) for e in events if e["type"] == "view" and e["category"])
    top_by_hour = {}
    for hour in sorted({h for h, _ in hourly}):
        candidates = [(c, n) for (h, c), n in hourly.items() if h == hour]
        purchases_by_cat = Counter(
            e["category"]
            for e in events
            if e["type"] == "purchase" and e["time"].hour == hour and e["category"]
        )
        top_by_hour[hour] = min(candidates, key=lambda cn: (-cn[1], -purchases_by_cat[cn[0]], cn[0]))[0]
    views = Counter(e["brand"] for e in events if e["type"] == "view")
    bought = Counter(e["brand"] for e in events if e["type"] == "purchase")
    day_conversion = sum(bought.values()) / sum(views.values())
    flagged = sorted(
        b for b in views if b is not None and views[b] >= 100 and bought[b] / views[b] < 0.5 * day_conversion
    )
    return {
        "rows_in": len(data),
        "quarantined": len(data) - len(valid),
        "duplicates": len(valid) - len(unique),
        "silver": len(unique),
        "visitors": len({e["user"] for e in events}),
        "sessions": len({e["session"] for e in events if e["session"]}),
        "views": sum(e["type"] == "view" for e in events),
        "carts": len(carts),
        "purchases": sum(e["type"] == "purchase" for e in events),
        "revenue": sum((e["price"] for e in events if e["type"] == "purchase"), Decimal("0")),
        "abandoned": len(abandoned),
        "abandoning_users": len({c["user"] for c in abandoned}),
        "abandoned_value": sum((c["price"] for c in abandoned), Decimal("0")),
        "top_by_hour": top_by_hour,
        "flagged_brands": flagged,
    }


def snapshot(lake: Path) -> dict[str, tuple[list[tuple], list[str]]]:
    out = {}
    for table in GOLD_TABLES:
        files = sorted(str(p.relative_to(lake)) for p in (lake / "gold" / table).rglob("*.parquet"))
        out[table] = (read_table(lake, table), [f.rsplit("/", 1)[0] for f in files])
    return out


@pytest.fixture(scope="module")
def real_day(tmp_path_factory, airflow_db):
    """Land the real Oct rows in a fresh lake and run the DAG for 2019-10-01 twice."""
    lake = tmp_path_factory.mktemp("real-lake")
    previous = os.environ.get("LAKEHOUSE_LOCAL_ROOT")
    os.environ["LAKEHOUSE_LOCAL_ROOT"] = str(lake)
    try:
        land_file(SAMPLE_OCT, lake)
        first = run_day()
        first_gold = snapshot(lake)
        second = run_day()
        second_gold = snapshot(lake)
    finally:
        if previous is not None:
            os.environ["LAKEHOUSE_LOCAL_ROOT"] = previous
    return {
        "lake": lake,
        "runs": (first, second),
        "gold": (first_gold, second_gold),
        "expected": expected_from_raw(SAMPLE_OCT),
    }


def test_real_rows_run_succeeds(real_day):
    for state, tasks in real_day["runs"]:
        assert state == "success", tasks
        assert set(tasks.values()) == {"success"}, tasks


def test_real_rows_counts_reconcile(real_day):
    lake, expected = real_day["lake"], real_day["expected"]
    silver = query(
        f"SELECT COUNT(*) FROM read_parquet('{lake}/silver/events/event_date=2019-10-01/*.parquet')"
    ).fetchone()[0]
    quarantined = query(
        f"SELECT COUNT(*) FROM read_parquet('{lake}/quarantine/events/event_date=2019-10-01/*.parquet')"
    ).fetchone()[0]
    assert expected["rows_in"] == 17435
    assert silver == expected["silver"]
    assert quarantined == expected["quarantined"] == 1
    assert expected["duplicates"] == 5
    assert silver + quarantined + expected["duplicates"] == expected["rows_in"]


def test_real_rows_daily_unique_visitors(real_day):
    lake, expected = real_day["lake"], real_day["expected"]
    row = query(
        f"SELECT unique_visitors, unique_sessions, views, carts, purchases, revenue "
        f"FROM read_parquet('{lake}/gold/daily_unique_visitors/*/*.parquet')"
    ).fetchone()
    assert row == (
        expected["visitors"],
        expected["sessions"],
        expected["views"],
        expected["carts"],
        expected["purchases"],
        expected["revenue"],
    )


def test_real_rows_cart_abandonment(real_day):
    lake, expected = real_day["lake"], real_day["expected"]
    row = query(
        f"SELECT cart_events, abandoned_carts, abandoning_users, abandoned_value, is_final "
        f"FROM read_parquet('{lake}/gold/cart_abandonment/*/*.parquet')"
    ).fetchone()
    # Only 2019-10-01 is landed, so its 24-hour windows run past the data: not final.
    assert row == (
        expected["carts"],
        expected["abandoned"],
        expected["abandoning_users"],
        expected["abandoned_value"],
        False,
    )


def test_real_rows_top_category_each_hour(real_day):
    lake, expected = real_day["lake"], real_day["expected"]
    rows = query(
        f"SELECT event_hour, category_code FROM read_parquet('{lake}/gold/top_categories_hourly/*/*.parquet') "
        "WHERE view_rank = 1 ORDER BY event_hour"
    ).fetchall()
    assert dict(rows) == expected["top_by_hour"]


def test_real_rows_brands_flagged(real_day):
    lake, expected = real_day["lake"], real_day["expected"]
    rows = query(
        f"SELECT brand FROM read_parquet('{lake}/gold/brand_marketing/*/*.parquet') WHERE needs_marketing ORDER BY brand"
    ).fetchall()
    assert [r[0] for r in rows] == expected["flagged_brands"]
    assert expected["flagged_brands"]


def test_rerun_gives_identical_gold(real_day):
    first, second = real_day["gold"]
    for table in GOLD_TABLES:
        assert first[table][0] == second[table][0], table
        assert first[table][0], f"{table} is empty"
        assert second[table][1] == [f"gold/{table}/event_date=2019-10-01"], second[table][1]


def test_dashboard_written(real_day):
    page = real_day["lake"] / "dashboard" / "index.html"
    html = page.read_text()
    for table in GOLD_TABLES:
        assert f"id='{table}'" in html
    assert "https://" not in html.split("<body>", 1)[1].split("<script", 1)[0]
    assert str(real_day["expected"]["visitors"]) in html


def _bad_day(lake: Path, name: str, content: bytes, *, with_good: bool = False) -> Path:
    day_dir = lake / "landing" / "events" / "event_date=2019-10-01"
    day_dir.mkdir(parents=True, exist_ok=True)
    if with_good:
        land_file(SAMPLE_OCT, lake)
    path = day_dir / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("no-header.csv", SAMPLE_OCT.read_bytes().split(b"\r\n", 1)[1]),
        ("other-columns.csv", b"event_time,event_type,product_id\r\n2019-10-01 00:00:00 UTC,view,1\r\n"),
        ("empty.csv", b""),
    ],
)
def test_bad_landing_file_stops_run(lake, airflow_db, name, content):
    _bad_day(lake, name, content, with_good=True)
    state, tasks = run_day()
    assert state == "failed"
    assert tasks["check_landing"] == "failed"
    assert tasks["transform_to_silver"] == "upstream_failed"
    assert not (lake / "silver").exists()
    assert not (lake / "gold").exists()


def test_bad_landing_file_message(lake):
    from airflow.sdk.exceptions import AirflowFailException

    from lakehouse.targets.local import LocalLandingSensor

    path = _bad_day(
        lake, "other-columns.csv", b"event_time,event_type,product_id\n2019-10-01 00:00:00 UTC,view,1\n"
    )
    sensor = LocalLandingSensor(task_id="check_landing")
    with pytest.raises(AirflowFailException) as error:
        sensor.poke({"params": {"event_date": "2019-10-01"}})
    assert str(path) in str(error.value)
    assert EXPECTED_HEADER in str(error.value)


def test_damaged_rows_quarantined_nothing_lost(lake, airflow_db):
    good = (
        "2019-10-01 00:00:01 UTC,view,1307067,2053013558920217191,computers.notebook,lenovo,251.74,550050854,"
        "7c90fc70-0e80-4590-96f3-13c02c18c713"
    )
    rows = [
        EXPECTED_HEADER,
        good,
        good,  # duplicate
        good.replace("2053013558920217191", "2.05E+18"),  # spreadsheet-damaged id
        good.replace("view", "cart").replace("7c90fc70", "8c90fc70"),
        good.rsplit(",", 1)[0],  # cut-off row
    ]
    _bad_day(lake, "damaged.csv", "\r\n".join(rows).encode())
    state, tasks = run_day()
    assert state == "success", tasks
    quarantine = query(
        f"SELECT reject_reason FROM read_parquet('{lake}/quarantine/events/event_date=2019-10-01/*.parquet') ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in quarantine] == [
        "invalid category_id '2.05E+18': expected a 64-bit integer (a value like 2.05E+18 was damaged by a spreadsheet)",
        "wrong field count: expected 9, found 8",
    ]
    silver = query(f"SELECT COUNT(*) FROM read_parquet('{lake}/silver/events/*/*.parquet')").fetchone()[0]
    assert silver == 2
    # 5 rows in = 2 silver + 2 quarantined + 1 duplicate dropped.
    metrics = next((lake / "metrics/raw_to_silver/event_date=2019-10-01").glob("part-*")).read_text()
    assert '"rows_in": 5' in metrics
    assert '"duplicates_dropped": 1' in metrics


def test_param_day_overrides_logical_date(lake, airflow_db):
    land_file(SAMPLE_OCT, lake)
    state, tasks = run_day(datetime(2030, 1, 1, tzinfo=UTC), conf={"event_date": "2019-10-01"})
    assert state == "success", tasks
    assert (lake / "gold" / "daily_unique_visitors" / "event_date=2019-10-01").is_dir()


def test_event_ids_unique_in_silver(real_day):
    lake = real_day["lake"]
    total, distinct = query(
        f"SELECT COUNT(*), COUNT(DISTINCT event_id) FROM read_parquet('{lake}/silver/events/*/*.parquet')"
    ).fetchone()
    assert total == real_day["expected"]["silver"]
    assert distinct == total
