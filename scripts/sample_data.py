"""Deterministic, realistic sample records in the native shapes of CleverTap, Mixpanel and Segment.

Used by the demo, the benchmark and the tests. Same seed, same records, byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

EVENT_NAMES = ["App Launched", "Product Viewed", "Added To Cart", "Charged", "Search", "Notification Clicked"]
CITIES = ["Mumbai", "São Paulo", "Zürich", "東京", "Lagos", "Kraków", "München", "Montréal"]
PRODUCTS = [("sku-1001", "Café au lait ☕", 3.5), ("sku-2002", "Über headphones 🎧", 129.99),
            ("sku-3003", "Naïve notebook", 7.25), ("sku-4004", "Zwölf pencils ✏️", 2.0)]


def _clevertap_event(rng: random.Random, ts: datetime, user: int) -> dict[str, Any]:
    sku, name, price = rng.choice(PRODUCTS)
    return {
        "identity": f"user-{user}",
        "ts": int(ts.strftime("%Y%m%d%H%M%S")),
        "type": "event",
        "evtName": rng.choice(EVENT_NAMES),
        "evtData": {
            "Product ID": sku, "Product Name": name, "Price": price, "Quantity": rng.randint(1, 5),
            "Category": {"main": "retail", "sub": rng.choice(["audio", "stationery", "food"])},
            "Tags": rng.sample(["new", "sale", "gift", "eco"], k=rng.randint(0, 3)),
        },
        "profile": {"platform": rng.choice(["Android", "iOS", "Web"]), "city": rng.choice(CITIES)},
    }


def _mixpanel_event(rng: random.Random, ts: datetime, user: int) -> dict[str, Any]:
    return {
        "event": rng.choice(EVENT_NAMES),
        "properties": {
            "time": int(ts.timestamp() * 1000),
            "distinct_id": f"user-{user}",
            "$insert_id": f"{user:08x}{rng.getrandbits(64):016x}",
            "$city": rng.choice(CITIES),
            "$os": rng.choice(["Android", "iOS", "Mac OS X", "Windows"]),
            "mp_lib": "web",
            "cart_value": round(rng.uniform(0, 500), 2),
            "is_member": rng.random() < 0.3,
            "referrer": None,
            "experiments": {"checkout_v2": rng.choice(["control", "variant"])},
        },
    }


def _segment_event(rng: random.Random, ts: datetime, user: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": rng.choice(EVENT_NAMES),
        "userId": f"user-{user}",
        "anonymousId": f"anon-{rng.getrandbits(48):012x}",
        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "properties": {"revenue": round(rng.uniform(1, 99), 2), "currency": "EUR", "items": rng.randint(1, 9)},
        "context": {"locale": rng.choice(["en-US", "de-DE", "ja-JP"]), "library": {"name": "analytics.js"}},
    }


SHAPES = {"clevertap": _clevertap_event, "mixpanel": _mixpanel_event, "segment": _segment_event}


def events(count: int, *, seed: int = 7, start: datetime | None = None, hours: int = 3,
           shapes: tuple[str, ...] = ("clevertap", "mixpanel")) -> Iterator[dict[str, Any]]:
    """`count` events spread evenly over `hours` UTC hours from `start` (default: a fixed day)."""
    rng = random.Random(seed)
    base = start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    span = hours * 3600
    for i in range(count):
        ts = base + timedelta(seconds=(i * span) // max(count, 1))
        yield SHAPES[shapes[i % len(shapes)]](rng, ts, rng.randint(1, max(10, count // 5)))


def profiles(count: int, *, seed: int = 11) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(count):
        if i % 2 == 0:
            yield {"identity": f"user-{i}", "objectId": f"__{rng.getrandbits(64):016x}",
                   "profileData": {"Name": f"Ünïcode Nämé {i}", "Email": f"user{i}@example.com",
                                   "Phone": f"+4915{rng.randint(10**7, 10**8 - 1)}", "Customer Type": "Silver",
                                   "MSG-push": rng.random() < 0.5}}
        else:
            yield {"$distinct_id": f"user-{i}", "$properties": {"$name": f"User {i}", "$city": rng.choice(CITIES),
                                                                  "plan": rng.choice(["free", "pro"]),
                                                                  "lifetime_value": rng.randint(0, 10**6)}}


def ndjson(records: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)
