"""Data-quality gate between silver and gold: the rules, free of any engine.

A target measures a ``SilverProfile`` of one day (rows counted in landing, silver and quarantine,
the job's own counts, the silver schema and rule violations) and ``evaluate`` lists what breaks.
The profile query below is plain SQL that DuckDB and Athena both run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
REQUIRED_COLUMNS = {
    "event_id": "string",
    "event_time": "timestamp",
    "event_type": "string",
    "product_id": "bigint",
    "category_id": "bigint",
    "category_code": "string",
    "brand": "string",
    "price": "decimal",
    "user_id": "bigint",
    "user_session": "string",
    "event_hour": "integer",
    "day_of_week": "integer",
    "event_date": "date",
}
NOT_NULL_COLUMNS = ("event_id", "event_time", "event_type", "product_id", "category_id", "price", "user_id")


def profile_sql(silver_table: str, day: date) -> str:
    """Return the query that measures rule violations in one silver day."""
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    nulls = " OR ".join(f"{c} IS NULL" for c in NOT_NULL_COLUMNS)
    return f"""
SELECT
    COUNT(*) AS silver_rows,
    COUNT(CASE WHEN event_type NOT IN ({types}) THEN 1 END) AS unknown_event_types,
    COUNT(CASE WHEN price < 0 THEN 1 END) AS negative_prices,
    COUNT(CASE WHEN {nulls} THEN 1 END) AS null_required_values,
    COUNT(CASE WHEN CAST(event_time AS DATE) <> DATE '{day.isoformat()}' THEN 1 END)
        AS rows_outside_day,
    COUNT(*) - COUNT(DISTINCT event_id) AS repeated_event_ids
FROM {silver_table}
WHERE CAST(event_date AS DATE) = DATE '{day.isoformat()}'
"""


@dataclass
class SilverProfile:
    """Counts and schema measured for one event date after the Glue job."""

    event_date: str
    rows_in: int
    silver_rows: int
    quarantined_rows: int
    duplicates_dropped: int
    job_rows_in: int
    job_silver_rows: int
    columns: dict[str, str]
    unknown_event_types: int = 0
    negative_prices: int = 0
    null_required_values: int = 0
    rows_outside_day: int = 0
    repeated_event_ids: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"event_date={self.event_date} rows_in={self.rows_in} silver={self.silver_rows} "
            f"quarantined={self.quarantined_rows} duplicates_dropped={self.duplicates_dropped}"
        )


def _type_matches(actual: str, expected: str) -> bool:
    actual = actual.lower()
    synonyms = {
        "string": ("varchar", "string"),
        "bigint": ("bigint", "long", "int64"),
        "integer": ("integer", "int", "int32"),
        "timestamp": ("timestamp",),
        "decimal": ("decimal",),
        "date": ("date",),
    }
    return actual.startswith(synonyms[expected])


def evaluate(profile: SilverProfile) -> list[str]:
    """Return one message per broken rule; an empty list means the day may go to gold."""
    failures = []
    accounted = profile.silver_rows + profile.quarantined_rows + profile.duplicates_dropped
    if profile.rows_in != accounted:
        failures.append(
            f"rows in ({profile.rows_in}) != silver ({profile.silver_rows}) + quarantined "
            f"({profile.quarantined_rows}) + duplicates dropped ({profile.duplicates_dropped})"
        )
    if profile.job_rows_in != profile.rows_in:
        failures.append(
            f"the Glue job read {profile.job_rows_in} rows but the landing files have "
            f"{profile.rows_in}: a landing file was added, replaced or removed after the job read "
            "the folder, so run the day again"
        )
    if profile.job_silver_rows != profile.silver_rows:
        failures.append(
            f"the Glue job wrote {profile.job_silver_rows} silver rows but silver has {profile.silver_rows}"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in profile.columns]
    if missing:
        failures.append(f"missing silver columns: {', '.join(missing)}")
    wrong_types = [
        f"{c} is {profile.columns[c]}, expected {t}"
        for c, t in REQUIRED_COLUMNS.items()
        if c in profile.columns and not _type_matches(profile.columns[c], t)
    ]
    if wrong_types:
        failures.append("wrong silver column types: " + "; ".join(wrong_types))
    for count, message in (
        (profile.unknown_event_types, f"rows with event_type outside {', '.join(EVENT_TYPES)}"),
        (profile.negative_prices, "rows with price < 0"),
        (profile.null_required_values, f"rows with NULL in {', '.join(NOT_NULL_COLUMNS)}"),
        (profile.rows_outside_day, f"rows whose event_time is not on {profile.event_date}"),
        (profile.repeated_event_ids, "repeated event_id values"),
    ):
        if count:
            failures.append(f"{count} {message}")
    if profile.silver_rows == 0:
        failures.append("silver has no rows for the day: every row was quarantined or dropped")
    return failures
