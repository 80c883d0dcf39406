-- Carts not followed by a purchase of the same product by the same user within the window.
-- Dialect: Athena engine 3 (Trino). Rendered with Jinja by lakehouse.gold before it runs.
--
-- A cart on day D is abandoned when no purchase of the same (user_id, product_id) happens at
-- or after the cart time and no later than window_hours after it. The run for day D rewrites
-- the cart days first_cart_date..D, because their windows can reach into D. A day is final
-- when every cart's window ends before data_through, the end of the days landed contiguously
-- after D; until then the abandoned counts include carts whose window is still open.
CREATE TABLE {{ ctas_table }}
WITH (
    format = 'PARQUET',
    write_compression = 'SNAPPY',
    external_location = '{{ ctas_location }}',
    partitioned_by = ARRAY['event_date']
) AS
WITH carts AS (
    -- A row number identifies each cart in the join below. It replaces event_id, a
    -- 32-character hash that Parquet cannot compress, which made this query read 1.9 times the
    -- bytes (bench/gold_bytes.py, 1.28 million events a day).
    SELECT
        ROW_NUMBER() OVER () AS cart_key,
        user_id,
        product_id,
        price,
        event_time AS cart_time,
        CAST(event_date AS DATE) AS cart_date
    FROM {{ silver_table }}
    WHERE event_type = 'cart'
        AND CAST(event_date AS DATE) BETWEEN DATE '{{ first_cart_date }}' AND DATE '{{ event_date }}'
),

purchases AS (
    SELECT
        user_id,
        product_id,
        event_time AS purchase_time
    FROM {{ silver_table }}
    WHERE event_type = 'purchase'
        AND CAST(event_date AS DATE)
        BETWEEN DATE '{{ first_cart_date }}' AND DATE '{{ last_purchase_date }}'
),

landed_after AS (
    SELECT
        landed_day,
        ROW_NUMBER() OVER (ORDER BY landed_day) AS position
    FROM (
        SELECT DISTINCT CAST(event_date AS DATE) AS landed_day
        FROM {{ silver_table }}
        WHERE CAST(event_date AS DATE) > DATE '{{ event_date }}'
            AND CAST(event_date AS DATE) <= DATE '{{ last_purchase_date }}'
    ) AS days
),

coverage AS (
    -- The n-th landed day after D is D + n only while no day is missing in between.
    SELECT
        CAST(
            DATE_ADD(
                'day',
                1 + COUNT_IF(DATE_DIFF('day', DATE '{{ event_date }}', landed_day) = position),
                DATE '{{ event_date }}'
            ) AS TIMESTAMP
        ) AS data_through
    FROM landed_after
),

outcomes AS (
    SELECT
        c.cart_key,
        c.cart_date,
        c.user_id,
        c.price,
        c.cart_time,
        COUNT(p.purchase_time) > 0 AS purchased
    FROM carts AS c
    LEFT JOIN purchases AS p
        ON p.user_id = c.user_id
        AND p.product_id = c.product_id
        AND p.purchase_time >= c.cart_time
        AND p.purchase_time <= c.cart_time + INTERVAL '{{ window_hours }}' HOUR
    GROUP BY c.cart_key, c.cart_date, c.user_id, c.price, c.cart_time
)

SELECT
    COUNT(*) AS cart_events,
    COUNT_IF(NOT o.purchased) AS abandoned_carts,
    COUNT_IF(o.purchased) AS purchased_carts,
    COUNT(DISTINCT o.user_id) AS carted_users,
    COUNT(DISTINCT CASE WHEN NOT o.purchased THEN o.user_id END) AS abandoning_users,
    CAST(COUNT_IF(NOT o.purchased) AS DOUBLE) / COUNT(*) AS abandonment_rate,
    CAST(COALESCE(SUM(CASE WHEN NOT o.purchased THEN o.price END), 0) AS DECIMAL(18, 2))
        AS abandoned_value,
    COUNT_IF(o.cart_time + INTERVAL '{{ window_hours }}' HOUR > cov.data_through) AS open_windows,
    {{ window_hours }} AS window_hours,
    MAX(cov.data_through) AS data_through,
    BOOL_AND(o.cart_time + INTERVAL '{{ window_hours }}' HOUR <= cov.data_through) AS is_final,
    o.cart_date AS event_date
FROM outcomes AS o
CROSS JOIN coverage AS cov
GROUP BY o.cart_date
