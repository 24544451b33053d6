"""Script refusals map to typed errors whose declared fields are the details the API lists."""

from __future__ import annotations

import re

import pytest

from engine.errors import ERRORS_BY_CODE, EngineError, InsufficientStock, error_from_reply
from engine.scripts import lua_dir

_FAIL = re.compile(r"fail\('(\w+)',\s*\{(.*?)\}\)", re.DOTALL)
_KEY = re.compile(r"(?:^|,)\s*(\w+)\s*=(?!=)")


def _refusals() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in sorted(lua_dir().glob("*.lua")):
        for code, table in _FAIL.findall(path.read_text()):
            found.append((path.stem, code, _KEY.findall(table)))
    return found


@pytest.mark.parametrize(("script", "code", "keys"), _refusals())
def test_every_refusal_a_script_sends_builds_its_class(
    script: str, code: str, keys: list[str]
) -> None:
    # A member the class does not declare would turn a refusal into a server error.
    error = error_from_reply(code, dict.fromkeys(keys, 1))
    assert type(error) is ERRORS_BY_CODE[code]
    assert set(error.details) == set(keys) - {"so"}


def test_the_sold_out_hint_travels_beside_the_details() -> None:
    reply = {"sku": "s", "location": "", "requested": 2, "available": 0, "so": 1}
    error = error_from_reply("insufficient_stock", reply)
    assert isinstance(error, InsufficientStock)
    assert error.sold_out
    assert error.details == {"sku": "s", "location": "", "requested": 2, "available": 0}
    assert not InsufficientStock(sku="s", location="", requested=1, available=0).sold_out


def test_an_unknown_code_is_a_plain_engine_error_naming_it() -> None:
    error = error_from_reply("brand_new", {"x": 1})
    assert type(error) is EngineError
    assert "brand_new" in str(error)
