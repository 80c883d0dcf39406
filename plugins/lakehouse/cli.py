"""Command line of the local lake: land raw files, and print a summary of the gold tables.

python -m lakehouse.cli land include/data/sample/2019-Oct-first-rows.csv
python -m lakehouse.cli summary --date 2019-10-01
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import date
from pathlib import Path

from lakehouse.settings import Settings


def _land(args: argparse.Namespace) -> int:
    from lakehouse.landing import LandingError, land_file, source_stem

    settings = Settings.from_env()
    root = Path(args.root).resolve() if args.root else settings.local_root
    paths = [Path(source) for source in args.files]
    for path in paths:
        if path.is_dir():
            print(f"error: {path} is a folder; give the raw files in it", file=sys.stderr)
            return 2
        if not path.is_file():
            print(f"error: file not found: {path}", file=sys.stderr)
            return 2
    stems = Counter(source_stem(p) for p in paths)
    clashes = sorted(str(p) for p in paths if stems[source_stem(p)] > 1)
    if clashes:
        # Landing files are named after their source, so these would overwrite each other.
        print(
            f"error: these files would land under the same name: {', '.join(clashes)}; rename one",
            file=sys.stderr,
        )
        return 2
    for path in paths:
        try:
            report = land_file(path, root, compress=args.gzip or None)
        except LandingError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except OSError as error:
            # A read-only lake, a file where a landing folder should be, a full disk.
            print(f"error: cannot land {path} into {root}: {error}", file=sys.stderr)
            return 1
        days = ", ".join(f"{d}: {n}" for d, n in sorted(report.rows_by_day.items()))
        print(
            f"landed {path}: {report.rows_in} rows in, {report.rows_landed} landed ({days}), "
            f"{report.quarantined} quarantined, header {'found' if report.has_header else 'absent'}"
        )
        for replaced in report.removed:
            print(f"  removed {replaced}: an earlier landing of this source")
    print(f"landing zone: {root / 'landing' / 'events'}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from lakehouse.dashboard import headline, read_gold

    settings = Settings.from_env()
    day = date.fromisoformat(args.date)
    root = settings.local_root
    data = read_gold(root, day)
    numbers = headline(data)
    metrics_dir = root / "metrics" / "raw_to_silver" / f"event_date={day.isoformat()}"
    counts = {}
    for part in sorted(metrics_dir.glob("part-*")):
        counts = json.loads(part.read_text())
    print(f"\nGold tables of {day} in {root / 'gold'}")
    if counts:
        print(
            f"  rows in {counts['rows_in']}, silver {counts['silver_rows']}, quarantined "
            f"{counts['quarantined_rows']}, duplicates dropped {counts['duplicates_dropped']}"
        )
    print(
        f"  daily_unique_visitors: {numbers['unique_visitors']} visitors, "
        f"{numbers['unique_sessions']} sessions, {numbers['views']} views, {numbers['carts']} "
        f"carts, {numbers['purchases']} purchases, revenue {numbers['revenue']}"
    )
    final = "final" if numbers["abandonment_final"] else "not final: the window runs past the landed data"
    print(
        f"  cart_abandonment: {numbers['abandoned_carts']} of {numbers['cart_events']} cart "
        f"events abandoned ({final})"
    )
    top_hour = [r for r in data["hourly"] if r["view_rank"] == 1]
    for row in top_hour:
        print(
            f"  top_categories_hourly: hour {row['event_hour']:02d} {row['category_code']} ({row['views']} views)"
        )
    top_day = [r for r in data["weekday"] if r["view_rank"] == 1]
    for row in top_day:
        print(
            f"  top_categories_weekday, all landed days: {row['day_name']} {row['category_code']} "
            f"({row['views']} views)"
        )
    flagged = numbers["brands_needing_marketing"]
    print(f"  brand_marketing: {len(flagged)} brands need marketing: {', '.join(flagged) or 'none'}")
    print(f"\nDashboard: {root / 'dashboard' / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    land = commands.add_parser(
        "land", help="split raw Kaggle files (CSV or gzip) by event date into the landing zone"
    )
    land.add_argument("files", nargs="+", help="raw events files, .csv or .csv.gz")
    land.add_argument("--root", help="local lake directory (default: LAKEHOUSE_LOCAL_ROOT or ./.lake)")
    land.add_argument(
        "--gzip",
        action="store_true",
        help="compress the landing files (default: compress only when the source is gzip)",
    )
    land.set_defaults(handler=_land)
    summary = commands.add_parser("summary", help="print the gold tables of one day")
    summary.add_argument("--date", required=True, help="event date, YYYY-MM-DD")
    summary.set_defaults(handler=_summary)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
