{{ config(unique_key=['behavior_scope', 'user_id']) }}

-- How each user browsed and bought, one row per user and scope:
-- - all_history: every event and order the run knows, for every user (marts.fact_user_behavior);
-- - through_first_order: buyers only, and only what happened up to and including their first order
--   (marts.repurchase_indicators compares repeat and one-time buyers on it). It ends at the first order
--   for everyone: after it, a one-time buyer's sessions are non-buying by definition of the label, so a
--   longer window would leak the answer the other way. Events count up to the first order's checkout,
--   except those of a session that checks out only later orders (it belongs to the second order even when
--   it began earlier); orders: the first only; a delivery counts as late or on time only if that was known
--   before the second order (for a one-time buyer: by the run's clock).
-- The events' part (sessions, page views, carts) is int_user_session_behavior's, where the windows on events are
-- defined; the orders' part, which the run's clock and every buyer's label move each day, is computed here.
-- A buyer's first and second orders are int_buyers'.
-- The import CTEs are read several times each: "not materialized" has the planner read the tables (with their
-- statistics) where they are used, instead of copies it can only guess the size of. Materialized, it estimated a
-- join of 1.2 million rows at 971 billion and spilled every sort to disk: 7.7-8.7 s at scale 1000, 4.3-5.4 s now
-- with favouring below (each change alone: 8.2 s and 6.8-7.0 s).
with

users as not materialized (
    select * from {{ ref('stg_postgres__users') }}
),

session_behavior as (
    -- The part read from events, kept apart: a daily run recomputes it for the users whose events changed.
    select * from {{ ref('int_user_session_behavior') }}
),

orders as not materialized (
    select * from {{ ref('int_orders') }}
    where user_id is not null
),

order_items as not materialized (
    select * from {{ ref('int_order_items') }}
),

buyers as not materialized (
    select * from {{ ref('int_buyers') }}
),

scoped_orders as (
    select
        'all_history' as behavior_scope,
        order_id,
        user_id,
        promo_id,
        created_at,
        order_total,
        unit_count,
        item_count,
        estimated_delivery_at,
        -- Delivered as fact_orders has it: by its status (a shipped order with a delivery time, which staging warns
        -- about, was on time here and not delivered there).
        case when status = 'delivered' then delivered_at end as delivered_at,
        -- Delivered by its status, with no time (staging warns): whether it was late is not known (review: it
        -- counted as late once its estimate passed, a missing timestamp read as a late delivery).
        coalesce(status = 'delivered', false) and delivered_at is null as delivered_at_missing,
        -- Whether a delivery was late is judged with what was known by then.
        {{ run_time }} as known_by
    from orders
    union all
    select
        'through_first_order' as behavior_scope,
        orders.order_id,
        orders.user_id,
        orders.promo_id,
        orders.created_at,
        orders.order_total,
        orders.unit_count,
        orders.item_count,
        orders.estimated_delivery_at,
        case when orders.status = 'delivered' then orders.delivered_at end as delivered_at,
        coalesce(orders.status = 'delivered', false) and orders.delivered_at is null as delivered_at_missing,
        coalesce(buyers.second_order_at, {{ run_time }}) as known_by
    from orders
    inner join buyers on orders.order_id = buyers.first_order_id
),

order_behavior as (
    select
        behavior_scope,
        user_id,
        count(*) as orders,
        avg((promo_id is not null)::int) as promo_order_share,
        avg(order_total) as avg_order_total,
        -- An order without lines (late or missing in raw: fact_orders warns) has no units to count, not zero: left
        -- out, so a buyer whose first order has none has no value (review: zeros made an indicator significant).
        avg(unit_count) filter (where item_count > 0) as avg_order_units,
        avg(item_count) filter (where item_count > 0) as avg_order_products,
        count(*) filter (where item_count > 0) as orders_with_lines,
        extract(epoch from max(created_at) - min(created_at)) / 86400 / nullif(count(*) - 1, 0)
            as avg_days_between_orders,
        -- Known: delivered by then, or its estimate passed by then (a missed estimate is late).
        count(*) filter (
            where not delivered_at_missing and (
                estimated_delivery_at <= known_by or (estimated_delivery_at is not null and delivered_at <= known_by)
            )
        ) as deliveries_known,
        count(*) filter (
            where not delivered_at_missing and estimated_delivery_at <= known_by
            and (delivered_at is null or delivered_at > estimated_delivery_at)
        ) as late_deliveries
    from scoped_orders
    group by behavior_scope, user_id
),

product_first_orders as (
    -- How many repeat and one-time buyers had each product in their first order (a buyer counts once per product).
    -- First orders only: a repeat buyer has more orders, so more chances to have bought any product.
    select
        order_items.product_id,
        count(distinct buyers.user_id) filter (where buyers.is_repeat_buyer) as repeat_buyers,
        count(distinct buyers.user_id) filter (where not buyers.is_repeat_buyer) as one_time_buyers
    from buyers
    inner join order_items on buyers.first_order_id = order_items.order_id
    group by order_items.product_id
),

counted_buyers as (
    -- Buyers whose first order has lines: one without (lines late or missing in raw) has no value here, and must
    -- not weigh in the shares that decide everyone else's (second review).
    select
        user_id,
        is_repeat_buyer
    from buyers
    where exists (
        select 1 from order_items
        where order_items.order_id = buyers.first_order_id
    )
),

buyer_groups as (
    select
        count(*) filter (where is_repeat_buyer) as repeat_buyers,
        count(*) filter (where not is_repeat_buyer) as one_time_buyers
    from counted_buyers
),

favouring as (
    -- Whether a product is repeat-favoured for a buyer depends only on the product, the buyer's label and whether
    -- the product was in the buyer's own first order: a larger share of the *other* repeat buyers than of the
    -- other one-time buyers had it in their first order (leave-one-out: the buyer's own label, which the indicator
    -- is compared with, does not decide it). r/R > s/S is compared as r*S > s*R, which is false when either group
    -- is empty. The buyer leaves the groups' sizes only if counted in them (review: a repeat buyer whose first order
    -- had no lines was taken out of the repeat buyers all the same, and a product one-time buyers had first came
    -- out repeat-favoured, 0 * 1 > 1 * -1). A product in the buyer's own first order means the buyer is counted.
    -- Eight rows per product (label x own first order x counted), looked up once per product a buyer bought.
    select
        product_first_orders.product_id,
        labels.is_repeat_buyer,
        own.in_first_order,
        counted.is_counted,
        (product_first_orders.repeat_buyers - (own.in_first_order and labels.is_repeat_buyer)::int)
        * (buyer_groups.one_time_buyers - (counted.is_counted and not labels.is_repeat_buyer)::int)
        > (product_first_orders.one_time_buyers - (own.in_first_order and not labels.is_repeat_buyer)::int)
        * (buyer_groups.repeat_buyers - (counted.is_counted and labels.is_repeat_buyer)::int) as is_favoured
    from product_first_orders
    cross join buyer_groups
    cross join (values (true), (false)) as labels (is_repeat_buyer)
    cross join (values (true), (false)) as own (in_first_order)
    cross join (values (true), (false)) as counted (is_counted)
),

bought_products as (
    -- Each product a buyer ever bought, and whether their first order had it.
    select
        orders.user_id,
        order_items.product_id,
        bool_or(orders.order_id = buyers.first_order_id) as in_first_order
    from orders
    inner join order_items on orders.order_id = order_items.order_id
    inner join buyers on orders.user_id = buyers.user_id
    group by orders.user_id, order_items.product_id
),

favoured_by_buyer as (
    -- Over every product a buyer bought (through_first_order: their first order's only, where the product is their
    -- own). A product in no first order (no row in favouring) is favoured for nobody: 0 * S > 0 * R is false.
    select
        bought_products.user_id,
        bool_or(coalesce(favouring.is_favoured, false)) as all_history,
        bool_or(coalesce(favouring.is_favoured, false)) filter (
            where bought_products.in_first_order
        ) as through_first_order
    from bought_products
    inner join buyers on bought_products.user_id = buyers.user_id
    left join counted_buyers on bought_products.user_id = counted_buyers.user_id
    left join favouring
        on
            bought_products.product_id = favouring.product_id
            and buyers.is_repeat_buyer = favouring.is_repeat_buyer
            and bought_products.in_first_order = favouring.in_first_order
            and (counted_buyers.user_id is not null) = favouring.is_counted
    group by bought_products.user_id
),

favoured_products as (
    select
        'all_history' as behavior_scope,
        user_id,
        all_history as bought_repeat_favoured_product
    from favoured_by_buyer
    union all
    select
        'through_first_order' as behavior_scope,
        user_id,
        through_first_order as bought_repeat_favoured_product
    from favoured_by_buyer
    -- No row for a first order without lines, as before the rewrite (final gives it NULL either way).
    where through_first_order is not null
),

scoped_users as (
    select
        'all_history' as behavior_scope,
        user_id,
        created_at as signed_up_at
    from users
    union all
    select
        'through_first_order' as behavior_scope,
        users.user_id,
        users.created_at as signed_up_at
    from users
    inner join buyers on users.user_id = buyers.user_id
),

final as (
    select
        scoped_users.behavior_scope,
        scoped_users.user_id,
        buyers.user_id is not null as is_buyer,
        coalesce(buyers.is_repeat_buyer, false) as is_repeat_buyer,
        coalesce(session_behavior.sessions, 0) as sessions,
        coalesce(session_behavior.page_views, 0) as page_views,
        coalesce(session_behavior.products_viewed, 0) as products_viewed,
        coalesce(session_behavior.add_to_carts, 0) as add_to_carts,
        coalesce(session_behavior.carts_abandoned, 0) as carts_abandoned,
        round(session_behavior.avg_session_minutes, 4) as avg_session_minutes,
        round(coalesce(session_behavior.total_session_minutes, 0), 4) as total_session_minutes,
        round(session_behavior.median_minutes_cart_to_checkout::numeric, 4) as median_minutes_cart_to_checkout,
        coalesce(order_behavior.orders, 0) as orders,
        round(order_behavior.promo_order_share, 4) as promo_order_share,
        round(order_behavior.avg_order_total, 4) as avg_order_total,
        round(order_behavior.avg_order_units, 4) as avg_order_units,
        round(order_behavior.avg_order_products, 4) as avg_order_products,
        round(order_behavior.avg_days_between_orders, 4) as avg_days_between_orders,
        coalesce(order_behavior.deliveries_known, 0) as deliveries_known,
        coalesce(order_behavior.late_deliveries, 0) as late_deliveries,
        case
            when order_behavior.orders_with_lines = 0 then null
            else coalesce(favoured_products.bought_repeat_favoured_product, false)
        end as bought_repeat_favoured_product,
        round(extract(epoch from buyers.first_order_at - scoped_users.signed_up_at) / 86400, 4)
            as days_signup_to_first_order
    from scoped_users
    left join buyers on scoped_users.user_id = buyers.user_id
    left join session_behavior
        on
            scoped_users.behavior_scope = session_behavior.behavior_scope
            and scoped_users.user_id = session_behavior.user_id
    left join order_behavior
        on
            scoped_users.behavior_scope = order_behavior.behavior_scope
            and scoped_users.user_id = order_behavior.user_id
    left join favoured_products
        on
            scoped_users.behavior_scope = favoured_products.behavior_scope
            and scoped_users.user_id = favoured_products.user_id
)

select * from final
