"""The checks every scenario shares, and the verdict line.

A verdict is a list of violations; empty means PASS. The checks read only the final state (API
levels, Postgres ledger) plus the buyers' own counts, so they hold against any host.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from loadtests.admin import SkuState


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.violations

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.violations.append(message)

    def line(self, scenario: str) -> str:
        facts = " ".join(f"{k}={v}" for k, v in self.facts.items())
        if self.passed:
            return f"VERDICT: PASS {scenario} {facts}".rstrip()
        return f"VERDICT: FAIL {scenario}: " + "; ".join(self.violations[:10])


def common_checks(state: dict[str, SkuState], failures: int) -> Verdict:
    """A verdict opened with what every scenario must hold: no unexpected answers, no leaked
    hold, no oversold location, ledger == levels."""
    verdict = Verdict()
    verdict.check(failures == 0, f"{failures} unexpected responses (see the report's failures)")
    for sku, s in state.items():
        for level in s.inventory["locations"]:
            where = f"{sku}@{level['location']}"
            verdict.check(level["reserved"] == 0, f"{where}: {level['reserved']} units still held")
            floor = -level["backorder_limit"]
            verdict.check(
                level["available"] >= floor,
                f"{where}: available {level['available']} below {floor} (oversold)",
            )
            verdict.check(level["on_hand"] >= 0, f"{where}: negative on_hand {level['on_hand']}")
        ledger_matches(verdict, sku, s)
    return verdict


def ledger_matches(verdict: Verdict, sku: str, s: SkuState) -> None:
    """Every change is in the ledger: its deltas per location sum to the final quantities."""
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in s.ledger:
        if row.get("location") is None:
            continue  # SKU-wide rows (configuration) carry no quantities
        for q in ("on_hand", "reserved", "committed"):
            sums[row["location"]][q] += row.get(f"d_{q}") or 0
    for level in s.inventory["locations"]:
        got = sums.get(level["location"], {})
        for q in ("on_hand", "reserved", "committed"):
            verdict.check(
                got.get(q, 0) == level[q],
                f"{sku}@{level['location']}: ledger {q} sums to {got.get(q, 0)}, API {level[q]}",
            )


def totals(state: dict[str, SkuState], member: str) -> int:
    return sum(int(s.inventory["total"][member]) for s in state.values())


def client_matches(verdict: Verdict, sold: int, counts: dict[str, int]) -> None:
    """Every commit a buyer was told succeeded is in the server, and nothing else is."""
    told = counts.get("units_committed", 0)
    verdict.check(sold == told, f"server committed {sold}, buyers were told {told}")


def sold_out(verdict: Verdict, sold: int, supply: int, counts: dict[str, int]) -> None:
    """Buyers still turned away in the sale's last seconds, when nobody abandons or lets a hold
    expire (users.calm), mean supply ran out: all of it must have sold."""
    if counts.get("refused_insufficient_stock_calm", 0):
        verdict.check(sold == supply, f"demand exceeded supply but only {sold} of {supply} sold")
