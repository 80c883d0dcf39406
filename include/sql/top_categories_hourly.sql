-- Categories ranked by views within each hour of one day, with carts, purchases and revenue.
-- Dialect: Athena engine 3 (Trino). Rendered with Jinja by lakehouse.gold before it runs.
-- Events without a category_code are left out: they cannot be ranked as a category.
CREATE TABLE {{ ctas_table }}
WITH (
    format = 'PARQUET',
    write_compression = 'SNAPPY',
    external_location = '{{ ctas_location }}',
    partitioned_by = ARRAY['event_date']
) AS
WITH category_hours AS (
    SELECT
        event_hour,
        category_code,
        category_l1,
        COUNT_IF(event_type = 'view') AS views,
        COUNT_IF(event_type = 'cart') AS carts,
        COUNT_IF(event_type = 'purchase') AS purchases,
        CAST(COALESCE(SUM(CASE WHEN event_type = 'purchase' THEN price END), 0) AS DECIMAL(18, 2))
            AS revenue,
        COUNT(DISTINCT user_id) AS visitors,
        CAST(event_date AS DATE) AS event_date
    FROM {{ silver_table }}
    WHERE CAST(event_date AS DATE) = DATE '{{ event_date }}'
        AND category_code IS NOT NULL
    GROUP BY CAST(event_date AS DATE), event_hour, category_code, category_l1
)

SELECT
    event_hour,
    ROW_NUMBER() OVER (
        PARTITION BY event_date, event_hour
        ORDER BY views DESC, purchases DESC, category_code ASC
    ) AS view_rank,
    category_code,
    category_l1,
    views,
    carts,
    purchases,
    revenue,
    visitors,
    event_date
FROM category_hours
