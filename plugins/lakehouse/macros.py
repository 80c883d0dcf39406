"""Template macros that resolve settings and the run's day when a task runs, never at parse.

The DAGs pass ``MACROS`` as ``user_defined_macros``, so a templated field of a stock operator
can say ``{{ lakehouse_settings().bucket }}`` or ``{{ lakehouse_event_date() }}``.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import pass_context

from lakehouse.params import resolve_event_date
from lakehouse.settings import Settings

_INGESTION_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_INGESTION_ID = 128


def lakehouse_settings() -> Settings:
    return Settings.from_env()


@pass_context
def lakehouse_event_date(context: Any) -> str:
    """Return the run's day as YYYY-MM-DD (see ``resolve_event_date``)."""
    return resolve_event_date(context).isoformat()


def ingestion_id(dataset: str, run_id: str, try_number: int) -> str:
    """Return a QuickSight ingestion id unique per task try.

    QuickSight accepts only letters, digits, ``-`` and ``_``, at most 128 characters, so the
    run id's ``:``, ``+`` and ``.`` become ``-``, and the dataset part is cut first when too long.
    """
    suffix = f"{_INGESTION_ID_UNSAFE.sub('-', run_id).strip('-')}-try{int(try_number)}"
    suffix = suffix[-(MAX_INGESTION_ID - 2) :]
    prefix = _INGESTION_ID_UNSAFE.sub("-", dataset).strip("-")[: MAX_INGESTION_ID - len(suffix) - 1]
    return f"{prefix}-{suffix}" if prefix else suffix


@pass_context
def lakehouse_ingestion_id(context: Any, dataset: str) -> str:
    return ingestion_id(dataset, context["run_id"], context["ti"].try_number)


MACROS = {
    "lakehouse_settings": lakehouse_settings,
    "lakehouse_event_date": lakehouse_event_date,
    "lakehouse_ingestion_id": lakehouse_ingestion_id,
}
