"""Process tuning for the long-running services built on the engine (API workers, sync worker).

Python's collector runs a young-generation pass every 700 new container objects and, now and
then, a full pass over everything alive. A service keeps a large, long-lived heap (modules, the
app, pools) and makes many short-lived objects per request or batch, so at the defaults it spends
a tenth to a fifth of its CPU walking the same objects again and again (measured: the sync
worker's batch rows, the API's reserve path). What the process built at start-up is frozen out
of every pass, and a pass runs once 50 000 objects have piled up: the rare cycle (an exception's
traceback) is still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_collector() -> None:
    """Call once the process has built what it keeps for its lifetime."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD)
