"""The local stand-in for the QuickSight dashboards: one static HTML page of the gold tables.

The page embeds plotly.js, so it opens from disk with no network. Every chart has a table of
its numbers under it, and ``summary.json`` beside the page has the day's headline figures.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from lakehouse.gold import connect_duckdb, gold_view_sql
from lakehouse.settings import GOLD_TABLES

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TOP_N = 10


def _rows(connection: Any, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = connection.execute(sql, parameters or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def read_gold(lake_root: Path, day: date) -> dict[str, Any]:
    """Read what the dashboard shows: the day's figures and the history of daily tables."""
    connection = connect_duckdb()
    try:
        available = []
        for table in GOLD_TABLES:
            root = lake_root / "gold" / table
            if any(root.glob("event_date=*/*.parquet")):
                connection.execute(gold_view_sql(str(root), table))
                available.append(table)

        # A table with no rows has no files, as a day without carts leaves cart_abandonment.
        def rows(table: str, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
            return _rows(connection, sql, parameters) if table in available else []

        d = day.isoformat()
        data = {
            "event_date": d,
            "visitors": rows(
                "daily_unique_visitors", "SELECT * FROM daily_unique_visitors ORDER BY event_date"
            ),
            "abandonment": rows("cart_abandonment", "SELECT * FROM cart_abandonment ORDER BY event_date"),
            "hourly": rows(
                "top_categories_hourly",
                """
                WITH top AS (
                    SELECT category_code FROM top_categories_hourly WHERE event_date = ?
                    GROUP BY category_code ORDER BY SUM(views) DESC, category_code LIMIT ?
                )
                SELECT event_hour, category_code, views, carts, purchases, revenue, view_rank
                FROM top_categories_hourly WHERE event_date = ?
                    AND category_code IN (SELECT category_code FROM top)
                ORDER BY event_hour, view_rank
                """,
                [d, TOP_N, d],
            ),
            "weekday": rows(
                "top_categories_weekday",
                """
                WITH totals AS (
                    SELECT day_of_week, day_name, category_code, SUM(views) AS views,
                        SUM(carts) AS carts, SUM(purchases) AS purchases, SUM(revenue) AS revenue,
                        COUNT(DISTINCT event_date) AS days
                    FROM top_categories_weekday GROUP BY day_of_week, day_name, category_code
                )
                SELECT *, ROW_NUMBER() OVER (
                    PARTITION BY day_of_week ORDER BY views DESC, purchases DESC, category_code
                ) AS view_rank
                FROM totals QUALIFY view_rank <= ? ORDER BY day_of_week, view_rank
                """,
                [TOP_N],
            ),
            "brands": rows(
                "brand_marketing",
                "SELECT * FROM brand_marketing WHERE event_date = ? ORDER BY view_rank",
                [d],
            ),
        }
    finally:
        connection.close()
    return data


def _table(rows: list[dict[str, Any]], columns: list[str], caption: str) -> str:
    head = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return (
        f"<details><summary>{html.escape(caption)}</summary>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _figures(data: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    import plotly.graph_objects as go

    day = data["event_date"]
    layout = dict(template="plotly_white", height=420, margin=dict(l=70, r=30, t=60, b=70))
    sections = []

    visitors = data["visitors"]
    fig = go.Figure(
        [
            go.Bar(
                name="Unique visitors",
                x=[str(r["event_date"]) for r in visitors],
                y=[r["unique_visitors"] for r in visitors],
            ),
            go.Bar(
                name="Unique sessions",
                x=[str(r["event_date"]) for r in visitors],
                y=[r["unique_sessions"] for r in visitors],
            ),
        ]
    )
    fig.update_layout(
        title="Unique visitors and sessions per day",
        xaxis_title="Event date (UTC)",
        yaxis_title="Count",
        barmode="group",
        xaxis_type="category",
        **layout,
    )
    sections.append(
        (
            "daily_unique_visitors",
            "Unique visitors per day",
            fig,
            _table(
                visitors,
                [
                    "event_date",
                    "unique_visitors",
                    "unique_sessions",
                    "views",
                    "carts",
                    "purchases",
                    "revenue",
                ],
                "Numbers: daily_unique_visitors",
            ),
        )
    )

    carts = data["abandonment"]
    x = [str(r["event_date"]) + ("" if r["is_final"] else " (not final)") for r in carts]
    fig = go.Figure(
        [
            go.Bar(
                name="Abandoned carts", x=x, y=[r["abandoned_carts"] for r in carts], marker_color="#d62728"
            ),
            go.Bar(
                name="Carts purchased", x=x, y=[r["purchased_carts"] for r in carts], marker_color="#2ca02c"
            ),
        ]
    )
    window = carts[-1]["window_hours"] if carts else ""
    fig.update_layout(
        title=f"Cart events per day: abandoned vs purchased within {window} h",
        xaxis_title="Cart event date (UTC)",
        yaxis_title="Cart events",
        barmode="stack",
        xaxis_type="category",
        **layout,
    )
    sections.append(
        (
            "cart_abandonment",
            "Carts not followed by a purchase",
            fig,
            _table(
                carts,
                [
                    "event_date",
                    "cart_events",
                    "abandoned_carts",
                    "abandonment_rate",
                    "abandoned_value",
                    "carted_users",
                    "abandoning_users",
                    "is_final",
                    "data_through",
                ],
                "Numbers: cart_abandonment",
            ),
        )
    )

    hourly = data["hourly"]
    categories = sorted(
        {r["category_code"] for r in hourly},
        key=lambda c: -sum(r["views"] for r in hourly if r["category_code"] == c),
    )
    views = {(r["category_code"], r["event_hour"]): r["views"] for r in hourly}
    fig = go.Figure(
        go.Heatmap(
            x=list(range(24)),
            y=categories,
            z=[[views.get((c, h), 0) for h in range(24)] for c in categories],
            colorscale="Blues",
            colorbar=dict(title="Views"),
        )
    )
    fig.update_layout(
        title=f"Views of the top {TOP_N} categories by hour, {day}",
        xaxis_title="Hour of day (UTC)",
        yaxis_title="Category",
        yaxis_autorange="reversed",
        **{**layout, "margin": dict(l=230, r=30, t=60, b=70)},
    )
    sections.append(
        (
            "top_categories_hourly",
            "Top categories by hour",
            fig,
            _table(
                hourly,
                ["event_hour", "view_rank", "category_code", "views", "carts", "purchases", "revenue"],
                "Numbers: top_categories_hourly",
            ),
        )
    )

    weekday = data["weekday"]
    fig = go.Figure()
    for name in WEEKDAYS:
        rows = [r for r in weekday if r["day_name"] == name]
        if rows:
            fig.add_bar(name=name, x=[r["category_code"] for r in rows], y=[r["views"] for r in rows])
    fig.update_layout(
        title=f"Views of the top {TOP_N} categories per day of week, all landed days",
        xaxis_title="Category",
        yaxis_title="Views",
        barmode="group",
        **layout,
    )
    sections.append(
        (
            "top_categories_weekday",
            "Top categories by day of week",
            fig,
            _table(
                weekday,
                ["day_name", "view_rank", "category_code", "views", "carts", "purchases", "revenue", "days"],
                "Numbers: top_categories_weekday",
            ),
        )
    )

    # Brands under the rule's minimum views are not judged, and their conversion is noise.
    brands = [r for r in data["brands"] if r["views"] >= r["rule_min_views"]]
    flagged = [r for r in brands if r["needs_marketing"]]
    min_views = data["brands"][0]["rule_min_views"] if data["brands"] else 0
    fig = go.Figure()
    for label, rows, color in (
        ("Needs marketing", flagged, "#d62728"),
        ("Other brands", [r for r in brands if not r["needs_marketing"]], "#1f77b4"),
    ):
        fig.add_scatter(
            name=label,
            mode="markers",
            x=[r["views"] for r in rows],
            y=[100 * (r["conversion_rate"] or 0) for r in rows],
            text=[r["brand"] for r in rows],
            marker=dict(color=color, size=9, opacity=0.75),
            hovertemplate="%{text}: %{x} views, %{y:.2f} % conversion",
        )
    fig.update_layout(
        title=f"Brands with at least {min_views} views: views against conversion, {day}",
        xaxis_title="Views (log scale)",
        yaxis_title="Conversion (%)",
        xaxis_type="log",
        **layout,
    )
    sections.append(
        (
            "brand_marketing",
            "Brands that need marketing",
            fig,
            _table(
                flagged or brands[:TOP_N],
                ["brand", "views", "carts", "purchases", "revenue", "conversion_rate", "marketing_reason"],
                "Numbers: brands flagged for marketing" if flagged else "Numbers: top brands",
            ),
        )
    )
    return sections


def headline(data: dict[str, Any]) -> dict[str, Any]:
    day = data["event_date"]
    visitors = next((r for r in data["visitors"] if str(r["event_date"]) == day), {})
    carts = next((r for r in data["abandonment"] if str(r["event_date"]) == day), {})
    return {
        "event_date": day,
        "unique_visitors": visitors.get("unique_visitors"),
        "unique_sessions": visitors.get("unique_sessions"),
        "views": visitors.get("views"),
        "carts": visitors.get("carts"),
        "purchases": visitors.get("purchases"),
        "revenue": str(visitors.get("revenue")),
        "cart_events": carts.get("cart_events"),
        "abandoned_carts": carts.get("abandoned_carts"),
        "abandonment_final": carts.get("is_final"),
        "brands_needing_marketing": sorted(r["brand"] for r in data["brands"] if r["needs_marketing"]),
    }


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
.kpis { display: flex; flex-wrap: wrap; gap: 1rem; }
.kpi { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 9rem; }
.kpi b { display: block; font-size: 1.5rem; }
section { margin-top: 2.5rem; }
table { border-collapse: collapse; font-size: .85rem; margin-top: .5rem; }
td, th { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
"""


def build_dashboard(lake_root: Path, day: date) -> Path:
    """Write ``dashboard/index.html`` and ``dashboard/summary.json`` and return the page's path."""
    data = read_gold(lake_root, day)
    numbers = headline(data)
    out_dir = lake_root / "dashboard"
    out_dir.mkdir(parents=True, exist_ok=True)
    kpis = "".join(
        f"<div class='kpi' data-kpi='{key}'>{html.escape(label)}<b>{html.escape(_fmt(numbers[key]))}</b></div>"
        for key, label in (
            ("unique_visitors", "Unique visitors"),
            ("unique_sessions", "Sessions"),
            ("views", "Views"),
            ("carts", "Carts"),
            ("purchases", "Purchases"),
            ("revenue", "Revenue (USD)"),
            ("abandoned_carts", "Abandoned carts"),
        )
    )
    parts = []
    for index, (table, heading, fig, numbers_table) in enumerate(_figures(data)):
        chart = fig.to_html(
            full_html=False,
            include_plotlyjs=index == 0,
            div_id=f"chart-{table}",
            config={"displaylogo": False},
        )
        parts.append(f"<section id='{table}'><h2>{html.escape(heading)}</h2>{chart}{numbers_table}</section>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>eCommerce lakehouse, {numbers['event_date']}</title><style>{_STYLE}</style></head>"
        f"<body><h1>eCommerce lakehouse: {numbers['event_date']}</h1>"
        f"<p>Gold tables of the local lake, generated {generated}. Prices are in USD as in the "
        "source data; times are UTC.</p>"
        f"<div class='kpis'>{kpis}</div>{''.join(parts)}</body></html>"
    )
    page_path = out_dir / "index.html"
    page_path.with_suffix(".partial").write_text(page, encoding="utf-8")
    page_path.with_suffix(".partial").replace(page_path)
    (out_dir / "summary.json").write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    return page_path
