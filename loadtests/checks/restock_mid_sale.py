"""restock_mid_sale: an admin restocks and adjusts (cycle counts) while buyers race.
Verdict: sold never exceeds what was on hand (initial + restocked - written off, the ledger's
on_hand deltas), sold exactly that once buyers were still turned away at the end, no negatives.
"""

from __future__ import annotations

from loadtests.admin import Admin, SkuState
from loadtests.verdict import Verdict, client_matches, common_checks, sold_out, totals


def skus(run_id: str) -> list[str]:
    return [f"{run_id}-rs"]


def seed(admin: Admin, run_id: str, units: int) -> None:
    admin.put_sku(skus(run_id)[0], {"locations": [{"location": "wh-1", "on_hand": units}]})


def verdict(
    state: dict[str, SkuState], counts: dict[str, int], units: int, failures: int
) -> Verdict:
    v = common_checks(state, failures)
    sold = totals(state, "committed")
    stocked = units + counts.get("units_added", 0)
    v.facts.update(initial=units, restocked=counts.get("units_added", 0), sold=sold)
    v.check(
        totals(state, "on_hand") == stocked,
        f"on_hand {totals(state, 'on_hand')}, admin stocked {stocked}",
    )
    v.check(sold <= stocked, f"oversold: {sold} committed of {stocked} stocked")
    client_matches(v, sold, counts)
    sold_out(v, sold, stocked, counts)
    return v
