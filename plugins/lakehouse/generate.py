"""Command line of the synthetic event generator: one file per day, into a lake or a folder.

python -m lakehouse.generate --from-date 2019-10-01 --to-date 2019-10-07 --lake .lake
python -m lakehouse.generate --from-date 2019-10-01 --events-per-day 20000 --output-dir /tmp/events
python -m lakehouse.generate --show-calibration
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

from lakehouse.generator import (
    DEFAULT_EVENTS_PER_DAY,
    DEFAULT_PEAK_HOUR_UTC,
    DEFAULT_PEAK_TO_TROUGH,
    DEFAULT_SAMPLE,
    DEFAULT_VARIANTS_PER_PRODUCT,
    CalibrationError,
    GeneratorSettings,
    calibrate,
    generate_days,
)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid date {text!r}: expected YYYY-MM-DD") from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.generate",
        description="Write synthetic eCommerce events in the Kaggle REES46 format, calibrated on real rows.",
    )
    parser.add_argument("--from-date", type=_day, help="first UTC day to generate, YYYY-MM-DD")
    parser.add_argument("--to-date", type=_day, help="last UTC day to generate (default: --from-date)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--lake",
        help="local lake root: files go to landing/events/event_date=D/ "
        "(default: $LAKEHOUSE_LOCAL_ROOT, else ./.lake)",
    )
    where.add_argument("--output-dir", help="write all files into this folder instead of a lake")
    parser.add_argument(
        "--events-per-day",
        type=int,
        default=DEFAULT_EVENTS_PER_DAY,
        help=f"mean events per day over a week (default {DEFAULT_EVENTS_PER_DAY})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    parser.add_argument("--csv", action="store_true", help="write plain .csv instead of .csv.gz")
    parser.add_argument(
        "--peak-hour", type=int, default=DEFAULT_PEAK_HOUR_UTC, help="UTC hour of peak traffic (0-23)"
    )
    parser.add_argument(
        "--peak-to-trough",
        type=float,
        default=DEFAULT_PEAK_TO_TROUGH,
        help=f"events in the peak hour over the trough hour (default {DEFAULT_PEAK_TO_TROUGH})",
    )
    parser.add_argument(
        "--variants-per-product",
        type=int,
        default=DEFAULT_VARIANTS_PER_PRODUCT,
        help="products per real product in the catalogue, the real one included",
    )
    parser.add_argument(
        "--duplicate-rate", type=float, default=0.0, help="share of rows written twice (exact duplicates)"
    )
    parser.add_argument(
        "--cut-last-row", action="store_true", help="end each file with a cut-off row and no newline"
    )
    parser.add_argument(
        "--crlf", action="store_true", help="end lines with CRLF, as the shipped excerpt does"
    )
    parser.add_argument(
        "--calibration-file",
        default=str(DEFAULT_SAMPLE),
        help="real Kaggle file with header to calibrate on (default: the shipped Oct excerpt)",
    )
    parser.add_argument(
        "--show-calibration", action="store_true", help="print the measured distributions as JSON and exit"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        calibration = calibrate(args.calibration_file)
    except CalibrationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.show_calibration:
        print(json.dumps(calibration.summary(), indent=2))
        return 0
    if args.from_date is None:
        print("error: missing --from-date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    last_day = args.to_date or args.from_date
    try:
        settings = GeneratorSettings(
            seed=args.seed,
            events_per_day=args.events_per_day,
            peak_hour_utc=args.peak_hour,
            peak_to_trough=args.peak_to_trough,
            variants_per_product=args.variants_per_product,
            duplicate_rate=args.duplicate_rate,
            cut_last_row=args.cut_last_row,
            line_ending="\r\n" if args.crlf else "\n",
            compress=not args.csv,
        )
        started = time.monotonic()
        if args.output_dir:
            reports = generate_days(
                args.from_date, last_day, settings, output_dir=Path(args.output_dir), calibration=calibration
            )
        else:
            lake = Path(args.lake or os.environ.get("LAKEHOUSE_LOCAL_ROOT") or ".lake").resolve()
            reports = generate_days(
                args.from_date, last_day, settings, lake_root=lake, calibration=calibration
            )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A file where a folder is expected, a read-only folder, a full disk.
        print(f"error: cannot write the synthetic files: {error}", file=sys.stderr)
        return 1
    for report in reports:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.counts.items()))
        print(f"wrote {report.path}: {report.rows} rows ({kinds}; duplicates {report.duplicates})")
    print(f"{len(reports)} synthetic files in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
