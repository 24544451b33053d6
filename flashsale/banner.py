"""What `flashsale dev` prints once the API answers: the demo sale's SKU and requests to paste.

demo_hint(base_url, storefront_key) -> lines     the SKU, then ready-to-paste curl commands
"""

from __future__ import annotations

import json
import shlex

from flashsale.demo import DEMO_CONFIG, DEMO_SKU

DEMO_CUSTOMER = "c-1"
DEMO_CART = "demo-cart-1"


def demo_hint(base_url: str, storefront_key: str) -> list[str]:
    """The demo SKU and two commands that work as pasted: read its stock, hold one unit."""
    base = base_url.rstrip("/")
    auth = shlex.quote(f"Authorization: Bearer {storefront_key}")
    cart = {"customer_id": DEMO_CUSTOMER, "lines": [{"sku": DEMO_SKU, "quantity": 1}]}
    locations = ", ".join(loc.location for loc in DEMO_CONFIG.locations)
    return [
        f"demo sale  SKU {DEMO_SKU} at {locations}, at most {DEMO_CONFIG.purchase_limit} per "
        f"customer, {DEMO_CONFIG.max_extensions} extensions per hold",
        "try it:",
        f"  curl -sS {base}/v1/inventory/{DEMO_SKU} -H {auth}",
        f"  curl -sS -X POST {base}/v1/reservations -H {auth} "
        f"-H 'Content-Type: application/json' -H 'Idempotency-Key: {DEMO_CART}' "
        f"-d {shlex.quote(json.dumps(cart))}",
    ]
