"""The seven raw Greenery tables: their columns and types, as the shop's database has them."""

from __future__ import annotations

# Ids stay text in raw, as the shop's database has them; staging decides what a valid id is.
RAW_TABLES: dict[str, dict[str, str]] = {
    "addresses": {
        "address_id": "text",
        "address": "text",
        "zipcode": "text",
        "state": "text",
        "country": "text",
    },
    "users": {
        "user_id": "text",
        "first_name": "text",
        "last_name": "text",
        "email": "text",
        "phone_number": "text",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
        "address_id": "text",
    },
    "promos": {
        "promo_id": "text",
        "discount": "numeric",
        "status": "text",
    },
    "products": {
        "product_id": "text",
        "name": "text",
        "price": "numeric",
        "inventory": "integer",
    },
    "orders": {
        "order_id": "text",
        "user_id": "text",
        "promo_id": "text",
        "address_id": "text",
        "created_at": "timestamptz",
        "order_cost": "numeric",
        "shipping_cost": "numeric",
        "order_total": "numeric",
        "tracking_id": "text",
        "shipping_service": "text",
        "estimated_delivery_at": "timestamptz",
        "delivered_at": "timestamptz",
        "status": "text",
    },
    "order_items": {
        "order_id": "text",
        "product_id": "text",
        "quantity": "integer",
    },
    "events": {
        "event_id": "text",
        "session_id": "text",
        "user_id": "text",
        "page_url": "text",
        "created_at": "timestamptz",
        "event_type": "text",
        "order_id": "text",
        "product_id": "text",
    },
}


# Incremental runs read raw events from a point in time on: without this index each run scans them all.
RAW_INDEXES: dict[str, tuple[str, ...]] = {"events": ("created_at",), "orders": ("created_at",)}


def way_out(table: str, column: str, renamed_from: str | None = None) -> str:
    """What to run about ``column`` of raw ``table`` (SQL names, quoted) that the files do not have: rename it back
    to ``renamed_from``, the files' column missing beside it (renamed upstream), else drop it."""
    if renamed_from is not None:
        return f"rename it back (alter table {table} rename column {column} to {renamed_from})"
    return f"drop it (alter table {table} drop column {column}) or add it to the files"
