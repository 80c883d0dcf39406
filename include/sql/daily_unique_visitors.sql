-- Visitors, sessions and the event funnel of one day.
-- Dialect: Athena engine 3 (Trino). Rendered with Jinja by lakehouse.gold before it runs.
CREATE TABLE {{ ctas_table }}
WITH (
    format = 'PARQUET',
    write_compression = 'SNAPPY',
    external_location = '{{ ctas_location }}',
    partitioned_by = ARRAY['event_date']
) AS
SELECT
    COUNT(DISTINCT user_id) AS unique_visitors,
    COUNT(DISTINCT user_session) AS unique_sessions,
    COUNT(*) AS events,
    COUNT_IF(event_type = 'view') AS views,
    COUNT_IF(event_type = 'cart') AS carts,
    COUNT_IF(event_type = 'remove_from_cart') AS removals_from_cart,
    COUNT_IF(event_type = 'purchase') AS purchases,
    COUNT(DISTINCT CASE WHEN event_type = 'purchase' THEN user_id END) AS purchasing_visitors,
    CAST(COALESCE(SUM(CASE WHEN event_type = 'purchase' THEN price END), 0) AS DECIMAL(18, 2))
        AS revenue,
    CAST(event_date AS DATE) AS event_date
FROM {{ silver_table }}
WHERE CAST(event_date AS DATE) = DATE '{{ event_date }}'
GROUP BY CAST(event_date AS DATE)
