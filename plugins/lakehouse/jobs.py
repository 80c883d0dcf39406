"""Run inputs shared by both targets: the Glue job's arguments and the gold assets."""

from __future__ import annotations

from datetime import date

from airflow.sdk import Asset

from lakehouse.settings import Lake

GLUE_SCRIPT = "raw_to_silver.py"


def glue_job_arguments(lake: Lake, day: date | str, output_files: int = 1) -> dict[str, str]:
    """Return the arguments of ``glue_scripts/raw_to_silver.py`` for one day.

    ``day`` may also be a template that renders to the date, as the aws target passes it.

    The keys carry Glue's ``--`` prefix, so the same mapping is the Glue job's ``script_args``
    and, flattened, the command line of a local run.
    """
    day = day.isoformat() if isinstance(day, date) else day
    return {
        "--landing_path": lake.landing_day(day),
        "--silver_path": lake.silver_events,
        "--quarantine_path": lake.quarantine_events,
        "--metrics_path": lake.metrics,
        "--event_date": day,
        "--output_files": str(output_files),
    }


def as_argv(arguments: dict[str, str]) -> list[str]:
    return [item for pair in arguments.items() for item in pair]


def gold_asset(table: str) -> Asset:
    """Return the asset a gold table's build task updates, the same on both targets.

    The ``x-`` scheme marks the URI as the project's own. Airflow then skips its lookup of URI
    normalizers, which imports every installed provider's asset module while the DAG file is
    parsed.
    """
    return Asset(name=f"ecommerce_gold_{table}", uri=f"x-lakehouse://gold/{table}")
