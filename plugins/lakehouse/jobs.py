"""What both targets share about one day's run: the Glue job's arguments and the day's paths."""

from __future__ import annotations

from datetime import date

from lakehouse.settings import Lake

GLUE_SCRIPT = "raw_to_silver.py"


def glue_job_arguments(lake: Lake, day: date, output_files: int = 1) -> dict[str, str]:
    """Return the arguments of ``glue_scripts/raw_to_silver.py`` for one day.

    The keys carry Glue's ``--`` prefix, so the same mapping is the Glue job's ``script_args``
    and, flattened, the command line of a local run.
    """
    return {
        "--landing_path": lake.landing_day(day.isoformat()),
        "--silver_path": lake.silver_events,
        "--quarantine_path": lake.quarantine_events,
        "--metrics_path": lake.metrics,
        "--event_date": day.isoformat(),
        "--output_files": str(output_files),
    }


def as_argv(arguments: dict[str, str]) -> list[str]:
    return [item for pair in arguments.items() for item in pair]
