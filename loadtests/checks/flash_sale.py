"""flash_sale: K units of one SKU, N >> K buyers at once; ~70% commit, the rest release or let
the hold expire. Verdict: never more than K sold, exactly K once demand outran supply, every
abandoned or expired hold back in stock, and the buyers' own commit count matches the server's.
"""

from __future__ import annotations

from loadtests.admin import Admin, SkuState
from loadtests.verdict import Verdict, client_matches, common_checks, sold_out, totals


def skus(run_id: str) -> list[str]:
    return [f"{run_id}-fs"]


def seed(admin: Admin, run_id: str, units: int) -> None:
    admin.put_sku(skus(run_id)[0], {"locations": [{"location": "wh-1", "on_hand": units}]})


def verdict(
    state: dict[str, SkuState], counts: dict[str, int], units: int, failures: int
) -> Verdict:
    v = common_checks(state, failures)
    sold = totals(state, "committed")
    v.facts.update(units=units, sold=sold, client_committed=counts.get("units_committed", 0))
    v.check(sold <= units, f"oversold: {sold} committed of {units}")
    v.check(totals(state, "on_hand") == units, "on_hand changed without a restock")
    client_matches(v, sold, counts)
    sold_out(v, sold, units, counts)
    return v
