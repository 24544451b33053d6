"""backorder: a SKU that may sell up to `backorder_limit` units beyond stock. Verdict: sold <=
on_hand + backorder_limit (exactly that once buyers were turned away at the end), and the units
sold beyond stock were reported as backordered on the reservations that took them.
"""

from __future__ import annotations

from loadtests.admin import Admin, SkuState
from loadtests.verdict import Verdict, client_matches, common_checks, sold_out, totals


def skus(run_id: str) -> list[str]:
    return [f"{run_id}-bo"]


def seed(admin: Admin, run_id: str, units: int) -> None:
    body = {
        "locations": [{"location": "wh-1", "on_hand": units, "backorder_limit": units}],
        "backorder_lead_days": 14,
    }
    admin.put_sku(skus(run_id)[0], body)


def verdict(
    state: dict[str, SkuState], counts: dict[str, int], units: int, failures: int
) -> Verdict:
    v = common_checks(state, failures)
    sold = totals(state, "committed")
    on_hand = totals(state, "on_hand")
    ceiling = on_hand + units  # seeded backorder_limit == units
    reported = counts.get("units_backordered", 0)
    v.facts.update(on_hand=on_hand, sold=sold, backordered_reported=reported)
    v.check(sold <= ceiling, f"oversold: {sold} committed, at most {ceiling} allowed")
    client_matches(v, sold, counts)
    # Releases can free stock after a later cart took backorders, so reported may exceed this.
    v.check(
        reported >= max(0, sold - on_hand),
        f"{sold - on_hand} units sold beyond stock, only {reported} reported backordered",
    )
    v.check(reported <= sold, f"{reported} backordered reported, only {sold} sold")
    sold_out(v, sold, ceiling, counts)
    return v
