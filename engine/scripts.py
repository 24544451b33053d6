"""Finds the Lua scripts (source tree or installed wheel), prepends their includes, and registers
them with a Redis client so they run by SHA and reload themselves after NOSCRIPT.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# Order matters: later includes call helpers of earlier ones.
INCLUDES = ("common", "sku_state", "reservation")
SCRIPTS = (
    "configure_sku",
    "reserve",
    "extend",
    "commit",
    "fulfil",
    "release",
    "expire",
    "change_on_hand",
    "snapshot",
    "get_reservation",
    "restore_sku",
)


def lua_dir() -> Path:
    """`engine/lua` inside an installed wheel, else the repository's top-level `lua/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "reserve.lua").is_file():
            return candidate
    raise FileNotFoundError(f"no Lua scripts next to {here}")


@cache
def load_script_source(name: str, base: Path | None = None) -> str:
    """The full text sent to Redis: includes first, then the script (from `base` if given)."""
    base = base or lua_dir()
    parts = [(base / "includes" / f"{inc}.lua").read_text() for inc in INCLUDES]
    parts.append((base / f"{name}.lua").read_text())
    return "\n".join(parts)


class Scripts:
    """One registered script per operation, bound to a client."""

    def __init__(self, redis: Redis, base: Path | None = None) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(load_script_source(name, base)) for name in SCRIPTS
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    async def load_all(self, redis: Redis) -> None:
        """Loads every script now, so a syntax error shows at start-up, not at the first sale."""
        for script in self._scripts.values():
            script.sha = await redis.script_load(script.script)

    def shas(self) -> dict[str, Any]:
        return {name: s.sha for name, s in self._scripts.items()}
