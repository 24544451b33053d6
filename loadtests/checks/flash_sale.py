"""flash_sale: K units of one SKU, N >> K buyers at once; ~70% commit, the rest release or let
the hold expire. Verdict: never more than K sold, exactly K once demand outran supply, every
abandoned or expired hold back in stock, and the buyers' own commit count matches the server's.
"""

from __future__ import annotations

from loadtests.admin import Admin, SkuState
from loadtests.verdict import Verdict, client_matches, common_checks, totals


def skus(run_id: str) -> list[str]:
    return [f"{run_id}-fs"]


def seed(admin: Admin, run_id: str, units: int) -> None:
    admin.put_sku(skus(run_id)[0], {"locations": [{"location": "wh-1", "on_hand": units}]})


def verdict(
    state: dict[str, SkuState], counts: dict[str, int], units: int, failures: int
) -> Verdict:
    v = Verdict()
    common_checks(v, state, failures)
    sold = totals(state, "committed")
    v.facts.update(units=units, sold=sold, client_committed=counts.get("units_committed", 0))
    v.check(sold <= units, f"oversold: {sold} committed of {units}")
    v.check(totals(state, "on_hand") == units, "on_hand changed without a restock")
    client_matches(v, sold, counts)
    if counts.get("refused_insufficient_stock_calm", 0):
        # Buyers were still turned away in the sale's last seconds: supply ran out, so all sold.
        v.check(sold == units, f"demand exceeded supply but only {sold} of {units} sold")
    return v
