"""Finds the Lua scripts (source tree or installed wheel), resolves their includes, and registers
them with a Redis client so they run by SHA and reload themselves after NOSCRIPT.

A script or include names each include it calls at its top, one line each:

    --- @include "sku_state"

which stands for `includes/sku_state.lua`. Redis takes one chunk per script, so the loader sends
the includes first, each once, every include after the ones it names itself, then the script.
The directive lines stay in the text (they are Lua comments).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from engine.errors import ConfigurationError

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

_INCLUDE = re.compile(r"""^---[ \t]*@include[ \t]+(["'])([\w-]+)\1[ \t]*$""", re.MULTILINE)


class IncludeError(ConfigurationError):
    """A Lua script names an include that does not exist, or includes form a cycle."""


def lua_dir() -> Path:
    """`engine/lua` inside an installed wheel, else the repository's top-level `lua/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "reserve.lua").is_file():
            return candidate
    raise FileNotFoundError(f"no Lua scripts next to {here}")


def includes_of(source: str) -> list[str]:
    """The include names a Lua text declares, in the order written."""
    return [match.group(2) for match in _INCLUDE.finditer(source)]


@cache
def load_script_source(name: str, base: Path | None = None) -> str:
    """The full text sent to Redis: every include the script needs, then the script itself."""
    base = base or lua_dir()
    source = (base / f"{name}.lua").read_text()
    ordered: list[str] = []  # include texts, each after the includes it names
    done: set[str] = set()

    def visit(include: str, chain: tuple[str, ...]) -> None:
        if include in chain:
            cycle = " -> ".join((*chain[chain.index(include) :], include))
            raise IncludeError(f"{name}.lua: include cycle {cycle}")
        if include in done:
            return
        path = base / "includes" / f"{include}.lua"
        if not path.is_file():
            by = chain[-1] if chain else name
            raise IncludeError(f"{by}.lua includes {include!r}, but {path} does not exist")
        text = path.read_text()
        for inner in includes_of(text):
            visit(inner, (*chain, include))
        done.add(include)
        ordered.append(text)

    for include in includes_of(source):
        visit(include, ())
    return "\n".join((*ordered, source))


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
