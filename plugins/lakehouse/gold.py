"""Gold tables: render the Athena CTAS files, and run them on DuckDB for the local target.

Each file in ``include/sql/`` is one ``CREATE TABLE ... WITH (...) AS SELECT`` in the Athena
engine 3 (Trino) dialect, a Jinja template of validated values. On AWS the rendered text goes to
Athena as it is. Locally ``plan_ctas`` parses it as Athena SQL with sqlglot, maps the CTAS
properties to a DuckDB ``COPY`` explicitly and transpiles the query. A property or a function it
cannot map raises ``TranslationError`` instead of being dropped.

Each run writes to a fresh staging location and then swaps the event_date partitions it produced
into ``gold/<table>/``, so a rerun of a day leaves exactly one copy of that day.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.params import GoldParameters

_LOCATION_PATTERN = re.compile(r"^[A-Za-z0-9_./:=-]+$")
_TABLE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_COMPRESSIONS = {"SNAPPY": "snappy", "GZIP": "gzip", "ZSTD": "zstd", "NONE": "uncompressed"}


class TranslationError(ValueError):
    """An Athena CTAS statement that cannot be run faithfully on DuckDB."""


def sql_path(sql_dir: Path, table: str) -> Path:
    path = sql_dir / f"{table}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"gold SQL file not found: {path}")
    return path


def render_sql(
    sql_dir: Path,
    table: str,
    parameters: GoldParameters,
    *,
    ctas_table: str,
    ctas_location: str,
    silver_table: str,
) -> str:
    """Render one gold SQL file with validated values; an unknown placeholder raises."""
    import jinja2

    for name, value in (("ctas_table", ctas_table), ("silver_table", silver_table)):
        if not _TABLE_PATTERN.match(value):
            raise ValueError(f"invalid {name} {value!r}: expected [schema.]table of letters, digits, _")
    if not _LOCATION_PATTERN.match(ctas_location):
        raise ValueError(f"invalid ctas_location {ctas_location!r}: unexpected character")
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    template = environment.from_string(sql_path(sql_dir, table).read_text())
    return template.render(
        ctas_table=ctas_table,
        ctas_location=ctas_location,
        silver_table=silver_table,
        **parameters.template_values(),
    )


@dataclass(frozen=True)
class CtasPlan:
    """An Athena CTAS statement split into its table properties and a DuckDB query."""

    table: str
    location: str
    file_format: str
    compression: str
    partitioned_by: tuple[str, ...]
    select_sql: str

    def copy_statement(self, target_dir: str) -> str:
        options = [f"FORMAT parquet, COMPRESSION {self.compression}"]
        if self.partitioned_by:
            options.append(f"PARTITION_BY ({', '.join(self.partitioned_by)})")
        quoted = target_dir.replace("'", "''")
        return f"COPY ({self.select_sql}) TO '{quoted}' ({', '.join(options)})"


def _literal_text(node: Any, name: str) -> str:
    import sqlglot.expressions as exp

    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    raise TranslationError(f"CTAS property {name} must be a string literal, found {node.sql()}")


def _trino_semantics_for_duckdb(node: Any) -> Any:
    """Rewrite the functions whose DuckDB namesake returns other values than Trino's."""
    import sqlglot.expressions as exp

    if isinstance(node, exp.CountIf):
        # Trino's count_if returns BIGINT and 0 for no rows. DuckDB's (2.0) returns HUGEINT,
        # which Parquet stores as DOUBLE, and NULL for no rows. COUNT(CASE ...) matches Trino.
        condition = node.this
        return exp.Count(this=exp.Case(ifs=[exp.If(this=condition, true=exp.Literal.number(1))]))
    return node


def plan_ctas(sql: str) -> CtasPlan:
    """Parse an Athena CTAS statement and translate it for DuckDB.

    :raises TranslationError: not one CTAS statement, an unknown or unsupported property, a
        format other than Parquet, partition columns not last, or SQL sqlglot cannot transpile.
    """
    import sqlglot
    import sqlglot.expressions as exp
    from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

    try:
        statements = sqlglot.parse(sql, read="athena")
    except ParseError as error:
        raise TranslationError(f"invalid Athena SQL: {error}") from error
    statements = [s for s in statements if s is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Create):
        raise TranslationError("expected exactly one CREATE TABLE ... AS SELECT statement")
    create = statements[0]
    query = create.expression
    if create.kind != "TABLE" or not isinstance(query, exp.Query):
        raise TranslationError("expected CREATE TABLE ... AS SELECT")

    file_format = location = None
    compression = "SNAPPY"
    partitioned_by: tuple[str, ...] = ()
    properties = create.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.FileFormatProperty):
            file_format = _literal_text(prop.this, "format").upper()
        elif isinstance(prop, exp.PartitionedByProperty):
            columns = prop.this.expressions if isinstance(prop.this, exp.Array) else []
            partitioned_by = tuple(_literal_text(c, "partitioned_by") for c in columns)
            if not partitioned_by:
                raise TranslationError(f"invalid partitioned_by {prop.this.sql()}")
        elif isinstance(prop, exp.Property) and prop.name == "external_location":
            location = _literal_text(prop.args["value"], "external_location")
        elif isinstance(prop, exp.Property) and prop.name == "write_compression":
            compression = _literal_text(prop.args["value"], "write_compression").upper()
        else:
            raise TranslationError(f"unsupported CTAS property for the local target: {prop.sql()}")
    if file_format != "PARQUET":
        raise TranslationError(f"unsupported CTAS format {file_format!r}: only PARQUET is mapped")
    if compression not in _COMPRESSIONS:
        raise TranslationError(f"unsupported write_compression {compression!r}")
    if not location:
        raise TranslationError("missing CTAS property external_location")

    outputs = [e.alias_or_name for e in query.selects]
    if partitioned_by and tuple(outputs[-len(partitioned_by) :]) != partitioned_by:
        raise TranslationError(
            f"Athena needs the partition columns {list(partitioned_by)} last in the SELECT, "
            f"found {outputs[-len(partitioned_by) :]}"
        )
    query = query.transform(_trino_semantics_for_duckdb)
    try:
        select_sql = query.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as error:
        raise TranslationError(f"cannot translate to DuckDB: {error}") from error
    return CtasPlan(
        table=create.this.sql(dialect="athena"),
        location=location,
        file_format=file_format,
        compression=_COMPRESSIONS[compression],
        partitioned_by=partitioned_by,
        select_sql=select_sql,
    )


def silver_view_sql(silver_root: str, view: str = "silver_events") -> str:
    """Return the DuckDB view of the silver table over its event_date partitions."""
    pattern = f"{silver_root.rstrip('/')}/event_date=*/*.parquet".replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet('{pattern}', "
        "hive_partitioning = true, hive_types = {'event_date': DATE}, union_by_name = true)"
    )


def gold_view_sql(gold_root: str, table: str) -> str:
    pattern = f"{gold_root.rstrip('/')}/event_date=*/*.parquet".replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{pattern}', "
        "hive_partitioning = true, hive_types = {'event_date': DATE}, union_by_name = true)"
    )


def connect_duckdb(memory_limit: str | None = None):
    """Open an in-memory DuckDB with UTC session time, as Athena uses."""
    import duckdb

    connection = duckdb.connect(":memory:")
    connection.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        connection.execute(f"SET memory_limit = '{memory_limit}'")
    return connection


@dataclass(frozen=True)
class GoldResult:
    """Result of one local gold build: rows per published partition, and partitions removed."""

    table: str
    partitions: dict[str, int]
    removed: tuple[str, ...]
    sql: str


def _partition_dirs(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {
        p.name.split("=", 1)[1]: p for p in root.iterdir() if p.is_dir() and p.name.startswith("event_date=")
    }


def build_gold_local(lake_root: Path, sql_dir: Path, table: str, parameters: GoldParameters) -> GoldResult:
    """Build one gold table for one run on DuckDB and publish its partitions.

    The partitions in ``parameters.output_dates(table)`` are this run's: those the query
    produced replace the published ones, and those it did not produce are removed, so a
    rerun after a change in silver leaves no stale day behind.
    """
    gold_root = lake_root / "gold" / table
    staging_parent = lake_root / "gold" / "_runs" / table
    token = f"{parameters.event_date.isoformat()}_{uuid.uuid4().hex[:12]}"
    for stale in staging_parent.glob(f"{parameters.event_date.isoformat()}_*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = staging_parent / token
    sql = render_sql(
        sql_dir,
        table,
        parameters,
        ctas_table=f"{table}_{token.replace('-', '_')}",
        ctas_location=str(staging),
        silver_table="silver_events",
    )
    plan = plan_ctas(sql)
    if Path(plan.location) != staging:
        raise TranslationError(f"{table}.sql must write to ctas_location, found {plan.location}")
    if plan.partitioned_by != ("event_date",):
        raise TranslationError(f"{table}.sql must be partitioned by event_date only")

    connection = connect_duckdb()
    try:
        connection.execute(silver_view_sql(str(lake_root / "silver" / "events")))
        staging.parent.mkdir(parents=True, exist_ok=True)
        connection.execute(plan.copy_statement(str(staging)))
        produced = _partition_dirs(staging)
        counts = {
            day: connection.execute(
                "SELECT COUNT(*) FROM read_parquet(?)", [str(path / "*.parquet")]
            ).fetchone()[0]
            for day, path in produced.items()
        }
    finally:
        connection.close()

    first, last = parameters.output_dates(table)
    unexpected = [day for day in produced if not first.isoformat() <= day <= last.isoformat()]
    if unexpected:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(
            f"{table}.sql wrote event_date partitions {unexpected} outside its run's range {first}..{last}"
        )
    gold_root.mkdir(parents=True, exist_ok=True)
    for day, path in sorted(produced.items()):
        published = gold_root / f"event_date={day}"
        retired = gold_root / f".event_date={day}.{token}.old"
        if published.exists():
            published.rename(retired)
        path.rename(published)
        shutil.rmtree(retired, ignore_errors=True)
    removed = []
    for day, path in sorted(_partition_dirs(gold_root).items()):
        if first.isoformat() <= day <= last.isoformat() and day not in produced:
            shutil.rmtree(path)
            removed.append(day)
    shutil.rmtree(staging, ignore_errors=True)
    return GoldResult(table=table, partitions=counts, removed=tuple(removed), sql=sql)
