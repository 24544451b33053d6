"""multi_sku_carts: carts of 2-5 SKUs across two locations and several partitions; some commit,
some release, some expire. Verdict: every cart in the ledger holds all its SKUs or none (the
reservation id carries how many it asked for), nothing leaked, commits match the buyers' count.
"""

from __future__ import annotations

from collections import defaultdict

from loadtests.admin import Admin, SkuState
from loadtests.verdict import Verdict, client_matches, common_checks, totals

N_SKUS = 8


def skus(run_id: str) -> list[str]:
    return [f"{run_id}-ms{i}" for i in range(N_SKUS)]


def seed(admin: Admin, run_id: str, units: int) -> None:
    per = max(1, units // 2)
    for sku in skus(run_id):
        locs = [{"location": w, "on_hand": per} for w in ("wh-1", "wh-2")]
        admin.put_sku(sku, {"locations": locs})


def verdict(
    state: dict[str, SkuState], counts: dict[str, int], units: int, failures: int
) -> Verdict:
    v = common_checks(state, failures)
    held: dict[str, set[str]] = defaultdict(set)
    committed: dict[str, set[str]] = defaultdict(set)
    open_units: dict[str, int] = defaultdict(int)  # per cart: held + committed at the end
    for sku, s in state.items():
        for row in s.ledger:
            rid = row.get("reservation_id")
            if not rid:
                continue
            open_units[rid] += (row.get("d_reserved") or 0) + (row.get("d_committed") or 0)
            if row["type"] == "reserved":
                held[rid].add(sku)
            elif row["type"] == "committed":
                committed[rid].add(sku)
    # A cart refused by a later partition is released in the earlier ones (the engine's
    # compensation), so a partial hold may appear in the ledger, but must end with nothing held.
    partial = [
        r
        for r, got in held.items()
        if len(got) != int(r.rsplit("-k", 1)[1]) and (open_units[r] or r in committed)
    ]
    half = [r for r, got in committed.items() if len(got) != int(r.rsplit("-k", 1)[1])]
    v.facts.update(carts=len(held), committed_carts=len(committed), sold=totals(state, "committed"))
    v.check(not partial, f"{len(partial)} carts kept part of their SKUs: {partial[:3]}")
    v.check(not half, f"{len(half)} carts committed only part of their SKUs: {half[:3]}")
    v.check(bool(committed), "no cart was committed: the run proves nothing")
    sold = totals(state, "committed")
    client_matches(v, sold, counts)
    return v
