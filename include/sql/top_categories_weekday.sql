-- Categories ranked by views for the day of week of one day, with carts, purchases and revenue.
-- Dialect: Athena engine 3 (Trino). Rendered with Jinja by lakehouse.gold before it runs.
-- Each run writes its own event_date partition, so a weekday's ranking over many weeks is a
-- sum over partitions, and one day's run never reads the history.
CREATE TABLE {{ ctas_table }}
WITH (
    format = 'PARQUET',
    write_compression = 'SNAPPY',
    external_location = '{{ ctas_location }}',
    partitioned_by = ARRAY['event_date']
) AS
WITH category_days AS (
    SELECT
        day_of_week,
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
    GROUP BY CAST(event_date AS DATE), day_of_week, category_code, category_l1
)

SELECT
    day_of_week,
    CASE day_of_week
        WHEN 1 THEN 'Monday'
        WHEN 2 THEN 'Tuesday'
        WHEN 3 THEN 'Wednesday'
        WHEN 4 THEN 'Thursday'
        WHEN 5 THEN 'Friday'
        WHEN 6 THEN 'Saturday'
        WHEN 7 THEN 'Sunday'
    END AS day_name,
    ROW_NUMBER() OVER (
        PARTITION BY event_date, day_of_week
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
FROM category_days
