-- Brand funnel of one day, and the brands that need marketing.
-- Dialect: Athena engine 3 (Trino). Rendered with Jinja by lakehouse.gold before it runs.
--
-- Rule: a brand needs marketing when it draws attention but does not sell, that is when it
-- has at least brand_min_views views and its conversion (purchases / views) is below
-- brand_conversion_ratio times the day's conversion over all events, with or without a brand.
-- Brands under brand_min_views are not judged: too few views to tell.
CREATE TABLE {{ ctas_table }}
WITH (
    format = 'PARQUET',
    write_compression = 'SNAPPY',
    external_location = '{{ ctas_location }}',
    partitioned_by = ARRAY['event_date']
) AS
WITH brands AS (
    SELECT
        brand,
        COUNT_IF(event_type = 'view') AS views,
        COUNT_IF(event_type = 'cart') AS carts,
        COUNT_IF(event_type = 'purchase') AS purchases,
        CAST(COALESCE(SUM(CASE WHEN event_type = 'purchase' THEN price END), 0) AS DECIMAL(18, 2))
            AS revenue,
        COUNT(DISTINCT user_id) AS visitors,
        CAST(event_date AS DATE) AS event_date
    FROM {{ silver_table }}
    WHERE CAST(event_date AS DATE) = DATE '{{ event_date }}'
    GROUP BY CAST(event_date AS DATE), brand
),

day_totals AS (
    SELECT CAST(SUM(purchases) AS DOUBLE) / NULLIF(SUM(views), 0) AS day_conversion
    FROM brands
),

judged AS (
    SELECT
        b.brand,
        b.views,
        b.carts,
        b.purchases,
        b.revenue,
        b.visitors,
        CAST(b.purchases AS DOUBLE) / NULLIF(b.views, 0) AS conversion_rate,
        CAST(b.purchases AS DOUBLE) / NULLIF(b.carts, 0) AS cart_to_purchase_rate,
        t.day_conversion,
        b.event_date
    FROM brands AS b
    CROSS JOIN day_totals AS t
    WHERE b.brand IS NOT NULL
)

SELECT
    brand,
    ROW_NUMBER() OVER (PARTITION BY event_date ORDER BY views DESC, brand ASC) AS view_rank,
    views,
    carts,
    purchases,
    revenue,
    visitors,
    conversion_rate,
    cart_to_purchase_rate,
    day_conversion,
    COALESCE(
        views >= {{ brand_min_views }}
        AND conversion_rate < {{ brand_conversion_ratio }} * day_conversion,
        FALSE
    ) AS needs_marketing,
    CASE
        WHEN views < {{ brand_min_views }} THEN 'not judged: fewer than {{ brand_min_views }} views'
        WHEN conversion_rate < {{ brand_conversion_ratio }} * day_conversion
            THEN 'conversion below {{ brand_conversion_ratio }} of the day''s conversion'
        ELSE 'converts at least {{ brand_conversion_ratio }} of the day''s conversion'
    END AS marketing_reason,
    {{ brand_min_views }} AS rule_min_views,
    {{ brand_conversion_ratio }} AS rule_conversion_ratio,
    event_date
FROM judged
