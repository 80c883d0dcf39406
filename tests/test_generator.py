"""The synthetic event generator: format, determinism, calibration, curves and streaming.

The statistical checks compare one generated day with the calibration measured from the real
Oct rows. Each tolerance is a few standard deviations of the generated figure: events come in
sessions of about 3.4 events that often return to the same product, so the effective sample
is several times smaller than the row count.
"""

from __future__ import annotations

import csv
import gzip
import re
import tracemalloc
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SAMPLE_OCT

from lakehouse.generate import main as generate_main
from lakehouse.generator import (
    Calibration,
    GeneratorSettings,
    calibrate,
    generate_days,
    iter_day_rows,
    landing_file_path,
)
from lakehouse.landing import EXPECTED_HEADER, check_header, land_file, landing_files, read_prefix

OCT_1 = date(2019, 10, 1)
SAMPLE_EVENTS = 150_000


def read_rows(path: Path) -> list[list[str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert ",".join(rows[0]) == EXPECTED_HEADER
    return rows[1:]


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return calibrate(SAMPLE_OCT)


@pytest.fixture(scope="module")
def sample_day(tmp_path_factory, calibration) -> list[list[str]]:
    """One generated Tuesday of 150,000 events (as the mean day), as parsed CSV rows."""
    folder = tmp_path_factory.mktemp("generated")
    settings = GeneratorSettings(seed=7, events_per_day=SAMPLE_EVENTS)
    (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=folder, calibration=calibration)
    return read_rows(report.path)


def test_calibration_measured_from_real_file(calibration):
    # The whole rows of the real Oct excerpt: its cut-off last row is left out.
    assert calibration.rows == 17434
    assert calibration.event_type_counts == {"view": 17055, "cart": 165, "purchase": 214}
    assert calibration.carts == 165
    assert len(calibration.products) == 6493
    assert sum(n for _, n in calibration.session_lengths) == 5066
    assert sum(n for _, n in calibration.sessions_per_user) == 4504


def test_same_seed_same_bytes(tmp_path, calibration):
    settings = GeneratorSettings(seed=3, events_per_day=4000)
    first = generate_days(OCT_1, OCT_1 + timedelta(days=1), settings, output_dir=tmp_path / "a")
    second = generate_days(OCT_1, OCT_1 + timedelta(days=1), settings, output_dir=tmp_path / "b")
    other = generate_days(
        OCT_1,
        OCT_1 + timedelta(days=1),
        GeneratorSettings(seed=4, events_per_day=4000),
        output_dir=tmp_path / "c",
    )
    for a, b, c in zip(first, second, other, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes(), a.path.name
        assert a.path.read_bytes() != c.path.read_bytes(), a.path.name


def test_day_alone_equals_day_in_range(tmp_path):
    settings = GeneratorSettings(seed=5, events_per_day=4000, compress=False)
    in_range = generate_days(OCT_1, OCT_1 + timedelta(days=2), settings, output_dir=tmp_path / "range")
    (alone,) = generate_days(
        OCT_1 + timedelta(days=1), OCT_1 + timedelta(days=1), settings, output_dir=tmp_path / "alone"
    )
    assert in_range[1].path.name == alone.path.name == "synthetic-events-2019-10-02.csv"
    assert in_range[1].path.read_bytes() == alone.path.read_bytes()


def test_iter_day_rows_equals_file(tmp_path, calibration):
    settings = GeneratorSettings(seed=5, events_per_day=2000, compress=False)
    (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=tmp_path)
    lines = report.path.read_text().splitlines()
    assert lines[1:] == list(iter_day_rows(OCT_1, settings, calibration))


def test_file_passes_landing_header_check(tmp_path):
    settings = GeneratorSettings(events_per_day=2000)
    (report,) = generate_days(OCT_1, OCT_1, settings, lake_root=tmp_path)
    assert report.path == landing_file_path(tmp_path, OCT_1, settings)
    assert report.path.name == "synthetic-events-2019-10-01.csv.gz"
    check_header(read_prefix(report.path), str(report.path))
    assert landing_files(report.path.parent) == [report.path]


def test_rows_follow_glue_field_rules(sample_day):
    import raw_to_silver as glue

    patterns = {
        "event_time": re.compile(glue.EVENT_TIME_PATTERN),
        "integer": re.compile(glue.INTEGER_PATTERN),
        "price": re.compile(glue.PRICE_PATTERN),
    }
    previous = ""
    for row in sample_day:
        assert len(row) == len(glue.EXPECTED_COLUMNS), row
        assert patterns["event_time"].match(row[0]), row
        assert row[0].endswith(" UTC"), row
        assert row[0].startswith("2019-10-01 "), row
        assert row[0] >= previous, f"rows not sorted by event_time at {row}"
        previous = row[0]
        assert row[1] in glue.EVENT_TYPES, row
        for value in (row[2], row[3], row[7]):
            assert patterns["integer"].match(value), row
            assert int(value) < 2**63, row
        assert patterns["price"].match(row[6]), row
        assert re.fullmatch(r"\d+\.\d\d", row[6]), f"price without 2 decimals in {row}"
        assert row[8], row


def test_category_ids_need_64_bits(sample_day):
    # Real category ids exceed 2**53, so a float or a spreadsheet would damage them.
    assert max(int(row[3]) for row in sample_day) > 2**53


@pytest.mark.spark
def test_rows_parse_on_spark(spark, tmp_path):
    import raw_to_silver as glue

    settings = GeneratorSettings(seed=11, events_per_day=1000, compress=False)
    (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=tmp_path)
    lines = glue.drop_headers(glue.read_lines(spark, str(report.path)))
    parsed = glue.parse_events(glue.split_fields(lines), OCT_1)
    rejected = parsed.where("reject_reason IS NOT NULL").select("reject_reason").collect()
    assert rejected == [], rejected[:5]
    # Zero-second gaps, measured in the real rows, make a few natural exact duplicates, as there.
    distinct = len(set(report.path.read_text().splitlines()[1:]))
    assert glue.to_silver(parsed).count() == distinct


def test_event_type_mix_near_calibration(sample_day, calibration):
    counts = Counter(row[1] for row in sample_day)
    expected = calibration.event_type_shares()
    total = len(sample_day)
    assert counts["remove_from_cart"] == 0, "the real rows have no removals, so neither may the generator"
    # About 1,400 carts and 1,800 purchases: one standard deviation is 3 % of each, with the
    # session clustering; 15 % is about 5 of them.
    for kind in ("cart", "purchase"):
        share = counts[kind] / total
        assert share == pytest.approx(expected[kind], rel=0.15), kind
    assert counts["view"] / total == pytest.approx(expected["view"], abs=0.005)


def test_top_categories_near_calibration(sample_day, calibration):
    expected = [(code, share) for code, share in calibration.category_shares().items() if code][:5]
    counts = Counter(row[4] for row in sample_day if row[4])
    total = len(sample_day)
    generated_top = {code for code, _ in counts.most_common(5)}
    # The 2nd and 3rd categories of the real rows differ by 4 events out of 17,434, so only the
    # set of the top five is compared, and each share on its own.
    assert generated_top == {code for code, _ in expected}
    # The smallest of these, about 1.9 % of events, has a standard deviation of about 4 % of
    # itself with the session clustering: 15 % is about 4 of them.
    for code, share in expected:
        assert counts[code] / total == pytest.approx(share, rel=0.15), code


def test_empty_brand_and_category_shares(sample_day, calibration):
    total = len(sample_day)
    # Shares of 14 % and 33 %: one standard deviation is under 0.3 points, so 1.5 points is wide.
    empty_brand = sum(1 for row in sample_day if row[5] == "") / total
    empty_category = sum(1 for row in sample_day if row[4] == "") / total
    assert empty_brand == pytest.approx(calibration.brand_shares()[""], abs=0.015)
    assert empty_category == pytest.approx(calibration.category_shares()[""], abs=0.015)


def test_hourly_curve_peak_over_trough(sample_day):
    settings = GeneratorSettings()
    weights = settings.hourly_weights()
    peak, trough = settings.peak_hour_utc, (settings.peak_hour_utc + 12) % 24
    assert weights[peak] / weights[trough] == pytest.approx(settings.peak_to_trough)
    by_hour = Counter(int(row[0][11:13]) for row in sample_day)
    # Three hours around each end: the trough hours have about 7,000 events from 1,800
    # visitors, whose event counts vary (standard deviation about 5.5), so the ratio's
    # standard deviation is about 4 %. Sessions running into the next hour shift it a little.
    around_peak = [(peak + d) % 24 for d in (-1, 0, 1)]
    around_trough = [(trough + d) % 24 for d in (-1, 0, 1)]
    expected = sum(weights[h] for h in around_peak) / sum(weights[h] for h in around_trough)
    measured = sum(by_hour[h] for h in around_peak) / sum(by_hour[h] for h in around_trough)
    assert measured == pytest.approx(expected, rel=0.12)
    assert max(by_hour, key=by_hour.get) in {14, 15, 16, 17}


def test_weekly_curve_saturday_over_tuesday(tmp_path, calibration):
    settings = GeneratorSettings(seed=2, events_per_day=40_000, compress=False)
    tuesday, saturday = OCT_1, OCT_1 + timedelta(days=4)
    assert (tuesday.isoweekday(), saturday.isoweekday()) == (2, 6)
    rows = {}
    for day in (tuesday, saturday):
        (report,) = generate_days(day, day, settings, output_dir=tmp_path, calibration=calibration)
        rows[day] = report.rows
    expected = settings.weekly_weights[saturday.weekday()] / settings.weekly_weights[tuesday.weekday()]
    # A 40,000-event day varies by about 1.5 %, so the ratio of two days by about 2 %.
    assert rows[saturday] / rows[tuesday] == pytest.approx(expected, rel=0.06)


def test_day_volume_near_setting(sample_day):
    expected = GeneratorSettings(events_per_day=SAMPLE_EVENTS).day_volume(OCT_1)
    assert len(sample_day) == pytest.approx(expected, rel=0.05)


def test_product_keeps_category_brand_price(sample_day, tmp_path, calibration):
    settings = GeneratorSettings(seed=7, events_per_day=20_000)
    (other,) = generate_days(
        OCT_1 + timedelta(days=9), OCT_1 + timedelta(days=9), settings, output_dir=tmp_path
    )
    attributes: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for row in [*sample_day, *read_rows(other.path)]:
        attributes[row[2]].add((row[3], row[4], row[5], row[6]))
    changed = {product: values for product, values in attributes.items() if len(values) > 1}
    assert changed == {}
    real = {
        str(p.product_id): (p.category_id, p.category_code, p.brand, p.price) for p in calibration.products
    }
    shared = [product for product in attributes if product in real]
    assert shared, "no real product was drawn"
    for product in shared:
        assert attributes[product] == {real[product]}, product


def test_cart_conversion_near_calibration(sample_day, calibration):
    purchases: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in sample_day:
        if row[1] == "purchase":
            purchases[(row[7], row[2])].append(row[0])
    # Carts before 19:00 have at least the 4-hour late-purchase tail inside the day.
    carts = [row for row in sample_day if row[1] == "cart" and row[0][11:13] < "19"]
    bought = sum(1 for row in carts if any(t >= row[0] for t in purchases[(row[7], row[2])]))
    # About 1,100 carts: the standard deviation of the share is 1.5 points; 6 points is 4 of them.
    assert bought / len(carts) == pytest.approx(calibration.cart_conversion, abs=0.06)


def test_quirks_duplicates_and_cut_row(tmp_path):
    settings = GeneratorSettings(seed=1, events_per_day=20_000, duplicate_rate=0.01, cut_last_row=True)
    (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=tmp_path)
    data = gzip.decompress(report.path.read_bytes())
    assert not data.endswith(b"\n"), "a cut-off last row has no newline"
    rows = read_rows(report.path)
    assert len(rows) == report.rows
    assert len(rows[-1]) == 8, rows[-1]
    repeated = sum(n - 1 for n in Counter(tuple(r) for r in rows).values() if n > 1)
    # Rows in the same second can also repeat by chance, as in the real rows (5 of 17,434).
    assert report.duplicates <= repeated <= report.duplicates + 0.001 * report.rows
    # About 190 duplicates expected: one standard deviation is 14.
    assert report.duplicates == pytest.approx(0.01 * report.rows, rel=0.3)


def test_crlf_line_endings(tmp_path):
    settings = GeneratorSettings(events_per_day=1000, line_ending="\r\n", compress=False)
    (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=tmp_path)
    data = report.path.read_bytes()
    assert data.startswith(EXPECTED_HEADER.encode() + b"\r\n")
    assert data.count(b"\r\n") == data.count(b"\n") == report.rows + 1


def test_generated_file_lands_unchanged(tmp_path):
    settings = GeneratorSettings(events_per_day=2000)
    (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=tmp_path / "out")
    landed = land_file(report.path, tmp_path / "lake")
    assert landed.rows_by_day == {"2019-10-01": report.rows}
    assert landed.quarantined == 0


def test_cli_writes_landing_layout(tmp_path, capsys):
    code = generate_main(
        [
            "--from-date",
            "2019-10-01",
            "--to-date",
            "2019-10-02",
            "--events-per-day",
            "500",
            "--lake",
            str(tmp_path),
        ]
    )
    assert code == 0
    for day in ("2019-10-01", "2019-10-02"):
        path = tmp_path / "landing" / "events" / f"event_date={day}" / f"synthetic-events-{day}.csv.gz"
        assert path.is_file(), path
    assert "2 synthetic files" in capsys.readouterr().out


def test_cli_rejects_reversed_range(tmp_path, capsys):
    code = generate_main(
        ["--from-date", "2019-10-02", "--to-date", "2019-10-01", "--output-dir", str(tmp_path)]
    )
    assert code == 2
    assert "invalid date range 2019-10-02..2019-10-01" in capsys.readouterr().err


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="invalid events_per_day 0"):
        GeneratorSettings(events_per_day=0)
    with pytest.raises(ValueError, match="invalid weekly_weights"):
        GeneratorSettings(weekly_weights=(1.0,) * 6)


def test_streaming_memory_bounded(tmp_path, calibration):
    settings = GeneratorSettings(seed=9, events_per_day=200_000, compress=False)
    tracemalloc.start()
    try:
        (report,) = generate_days(OCT_1, OCT_1, settings, output_dir=tmp_path, calibration=calibration)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.rows > 180_000
    # Holding the day would take at least its text, about 26 MB for 190,000 rows of 135
    # characters, plus about 50 bytes of object header per row. What is in flight instead is
    # one block's visitors and the sessions and late purchases still open (a few thousand
    # events), and the samplers built from the calibration: about 6 MB measured.
    assert peak < 15 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


def test_sorted_across_midnight(tmp_path):
    settings = GeneratorSettings(seed=4, events_per_day=5000, compress=False)
    reports = generate_days(OCT_1, OCT_1 + timedelta(days=1), settings, output_dir=tmp_path)
    second_day = read_rows(reports[1].path)
    first_times = [datetime.strptime(r[0], "%Y-%m-%d %H:%M:%S UTC") for r in second_day[:50]]
    assert first_times == sorted(first_times)
    assert first_times[0].date() == OCT_1 + timedelta(days=1)
