"""The landing contract (header check) and the command that lands raw files by event date."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from conftest import SAMPLE_NOV, SAMPLE_OCT

from lakehouse.cli import main as cli_main
from lakehouse.landing import EXPECTED_HEADER, LandingError, check_header, count_rows, land_file

ROW = "2019-10-01 00:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,72d76fde"


def test_check_header_accepts_contract():
    check_header(f"{EXPECTED_HEADER}\r\n{ROW}\r\n".encode(), "a.csv")


def test_check_header_accepts_gzip_prefix():
    data = gzip.compress(f"{EXPECTED_HEADER}\n{ROW}\n".encode() * 5000)
    check_header(data[:65536], "a.csv.gz")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "a.csv: file is empty"),
        (f"{ROW}\n".encode(), "a.csv: invalid header '2019-10-01 00:00:00 UTC,view"),
        (
            b"event_time,event_type,product_id\n1,2,3\n",
            "a.csv: invalid header 'event_time,event_type,product_id'",
        ),
        (f"{EXPECTED_HEADER},extra\n{ROW},x\n".encode(), "invalid header"),
        (f"{EXPECTED_HEADER}\n".encode(), "a.csv: file has the header but no rows"),
    ],
)
def test_check_header_rejects(content, message):
    with pytest.raises(LandingError) as error:
        check_header(content, "a.csv")
    assert message in str(error.value)
    if "invalid header" in message:
        assert EXPECTED_HEADER in str(error.value)


def test_land_real_oct_rows(tmp_path):
    report = land_file(SAMPLE_OCT, tmp_path)
    landed = tmp_path / "landing/events/event_date=2019-10-01/2019-Oct-first-rows.csv"
    assert report.has_header
    # 17,434 whole rows and the cut-off last row, all dated 2019-10-01.
    assert report.rows_in == 17435
    assert dict(report.rows_by_day) == {"2019-10-01": 17435}
    assert report.quarantined == 0
    assert landed.read_text().splitlines()[0] == EXPECTED_HEADER
    assert count_rows(landed) == 17435
    assert b"\r" not in landed.read_bytes()


def test_land_file_without_header(tmp_path):
    report = land_file(SAMPLE_NOV, tmp_path)
    landed = tmp_path / "landing/events/event_date=2019-11-01/2019-Nov-first-rows-no-header.csv"
    assert not report.has_header
    assert report.rows_in == 683
    assert landed.read_text().splitlines()[0] == EXPECTED_HEADER
    assert count_rows(landed) == 683


def test_land_gzip_splits_days_and_quarantines(tmp_path):
    source = tmp_path / "mixed.csv.gz"
    lines = [EXPECTED_HEADER, ROW, "garbage,view", ROW.replace("2019-10-01", "2019-10-02"), "", ROW]
    source.write_bytes(gzip.compress("\r\n".join(lines).encode()))
    report = land_file(source, tmp_path / "lake")
    assert report.rows_in == 4
    assert dict(report.rows_by_day) == {"2019-10-01": 2, "2019-10-02": 1}
    assert report.quarantined == 1
    assert report.rows_landed + report.quarantined == report.rows_in
    day_two = tmp_path / "lake/landing/events/event_date=2019-10-02/mixed.csv.gz"
    assert gzip.decompress(day_two.read_bytes()).decode().splitlines()[1].startswith("2019-10-02")
    quarantine = (tmp_path / "lake/quarantine/landing/mixed.csv").read_text()
    assert "event_time does not start with a date" in quarantine
    assert "garbage,view" in quarantine


def test_land_twice_replaces_files(tmp_path):
    land_file(SAMPLE_NOV, tmp_path)
    land_file(SAMPLE_NOV, tmp_path)
    files = list((tmp_path / "landing").rglob("*.csv"))
    assert len(files) == 1
    assert count_rows(files[0]) == 683
    assert not list((tmp_path / "landing").rglob("*.partial"))


@pytest.mark.parametrize("content", [b"", b"a,b\n1,2\n"])
def test_land_rejects_unknown_first_line(tmp_path, content):
    source = tmp_path / "bad.csv"
    source.write_bytes(content)
    with pytest.raises(LandingError, match=r"bad\.csv"):
        land_file(source, tmp_path / "lake")
    assert not (tmp_path / "lake" / "landing").exists() or not list(
        (tmp_path / "lake" / "landing").rglob("*")
    )


def test_cli_land_reports_counts(tmp_path, capsys):
    assert cli_main(["land", "--root", str(tmp_path), str(SAMPLE_OCT)]) == 0
    output = capsys.readouterr().out
    assert "17435 rows in, 17435 landed (2019-10-01: 17435), 0 quarantined" in output


def test_cli_land_missing_file(tmp_path, capsys):
    assert cli_main(["land", "--root", str(tmp_path), str(tmp_path / "nope.csv")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_count_rows_skips_header_and_blank(tmp_path: Path):
    path = tmp_path / "a.csv"
    path.write_text(f"{EXPECTED_HEADER}\n{ROW}\n\n{ROW}")
    assert count_rows(path) == 2


def test_land_again_compressed_replaces_plain(tmp_path):
    land_file(SAMPLE_NOV, tmp_path)
    land_file(SAMPLE_NOV, tmp_path, compress=True)
    day = tmp_path / "landing/events/event_date=2019-11-01"
    assert sorted(p.name for p in day.iterdir()) == ["2019-Nov-first-rows-no-header.csv.gz"]


def test_land_non_utf8_row_quarantined(tmp_path):
    source = tmp_path / "cp1252.csv"
    source.write_bytes(
        f"{EXPECTED_HEADER}\n{ROW}\n".encode() + ROW.replace("shiseido", "caf\xe9").encode("cp1252") + b"\n"
    )
    report = land_file(source, tmp_path / "lake")
    assert report.rows_in == 2
    assert report.rows_landed == 1
    assert report.quarantined == 1
    quarantine = (tmp_path / "lake/quarantine/landing/cp1252.csv").read_text()
    assert "not UTF-8 text" in quarantine


def test_land_truncated_gzip_names_file(tmp_path):
    source = tmp_path / "cut.csv.gz"
    data = gzip.compress(f"{EXPECTED_HEADER}\n{ROW}\n".encode() * 3000)
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        LandingError, match=r"cut\.csv\.gz: cannot read the gzip data .* truncated or corrupt"
    ):
        land_file(source, tmp_path / "lake")
    assert not list((tmp_path / "lake").rglob("*.csv*"))


def test_land_skips_leading_blank_lines(tmp_path):
    source = tmp_path / "blank-first.csv"
    source.write_text(f"\n\n{EXPECTED_HEADER}\n{ROW}\n")
    report = land_file(source, tmp_path / "lake")
    assert report.has_header
    assert report.rows_in == 1


def test_land_corrected_source_drops_old_day(tmp_path):
    source = tmp_path / "fix.csv"
    source.write_text(f"{EXPECTED_HEADER}\n{ROW}\n{ROW.replace('2019-10-01', '2019-10-02')}\n")
    land_file(source, tmp_path / "lake")
    source.write_text(f"{EXPECTED_HEADER}\n{ROW}\n")
    report = land_file(source, tmp_path / "lake")
    assert [Path(p).parent.name for p in report.removed] == ["event_date=2019-10-02"]
    assert not (tmp_path / "lake/landing/events/event_date=2019-10-02/fix.csv").exists()


def test_cli_land_rejects_name_clash(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "2019-Oct.csv").write_text(f"{EXPECTED_HEADER}\n{ROW}\n")
    code = cli_main(
        [
            "land",
            "--root",
            str(tmp_path / "lake"),
            str(tmp_path / "a/2019-Oct.csv"),
            str(tmp_path / "b/2019-Oct.csv"),
        ]
    )
    assert code == 2
    assert "would land under the same name" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


def test_cli_land_folder_message(tmp_path, capsys):
    assert cli_main(["land", "--root", str(tmp_path / "lake"), str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
