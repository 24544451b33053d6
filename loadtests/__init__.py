"""Locust suites that prove, under load, that the last unit cannot be sold twice.

scenarios/<name>.py   a locustfile (users) plus seed() and verdict() for the runner
users.py              the buyer base class: reserve / commit / release with expected refusals
outcomes.py           client-side counts (units committed, sold-out refusals) across processes
admin.py              the admin API client: seed SKUs, read inventory and the whole ledger
verdict.py            checks every scenario shares (ledger sums == final quantities, no leak)
runner.py             seed → locust headless → drain → verdict → report, on a given host
"""
