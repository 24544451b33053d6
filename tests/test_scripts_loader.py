"""The Lua loader: a script carries the includes it declares, each once; unknown or cyclic fail."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.scripts import SCRIPTS, IncludeError, includes_of, load_script_source, lua_dir

_DEFINES = re.compile(r"^local function (\w+)\(", re.MULTILINE)


def _write(base: Path, files: dict[str, str]) -> Path:
    (base / "includes").mkdir(parents=True)
    for name, text in files.items():
        (base / f"{name}.lua").write_text(text)
    return base


def test_an_include_named_twice_is_sent_once_after_its_own_includes(tmp_path: Path) -> None:
    base = _write(
        tmp_path,
        {
            "includes/a": '--- @include "b"\nlocal function a() return b() end\n',
            "includes/b": "local function b() return 1 end\n",
            "main": '--- @include "a"\n--- @include "b"\nreturn a()\n',
        },
    )
    source = load_script_source("main", base)
    assert source.count("local function b()") == 1
    assert source.index("local function b()") < source.index("local function a()")
    assert source.index("local function a()") < source.index("return a()")


def test_an_include_cycle_is_refused_naming_it(tmp_path: Path) -> None:
    base = _write(
        tmp_path,
        {
            "includes/a": '--- @include "b"\n',
            "includes/b": '--- @include "a"\n',
            "main": '--- @include "a"\nreturn 1\n',
        },
    )
    with pytest.raises(IncludeError, match="include cycle a -> b -> a"):
        load_script_source("main", base)


def test_an_unknown_include_is_refused_naming_who_asked(tmp_path: Path) -> None:
    base = _write(
        tmp_path,
        {"includes/a": '--- @include "nope"\n', "main": '--- @include "a"\nreturn 1\n'},
    )
    with pytest.raises(IncludeError, match="a.lua includes 'nope'"):
        load_script_source("main", base)


def _helpers(base: Path) -> dict[str, str]:
    """Helper function name -> the include that defines it."""
    return {
        function: path.stem
        for path in (base / "includes").glob("*.lua")
        for function in _DEFINES.findall(path.read_text())
    }


def _called(text: str, helpers: dict[str, str]) -> set[str]:
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    own = set(_DEFINES.findall(code))
    names = set(re.findall(r"(?<![\w.:])(\w+)\(", code))
    return {helpers[name] for name in names - own if name in helpers}


@pytest.mark.parametrize("path", sorted(lua_dir().glob("**/*.lua")), ids=lambda p: p.stem)
def test_every_lua_file_declares_exactly_the_includes_it_calls(path: Path) -> None:
    # A missing include is no syntax error: Redis would refuse the script only when the call runs.
    helpers = _helpers(lua_dir())
    text = path.read_text()
    assert sorted(includes_of(text)) == sorted(_called(text, helpers))


def test_get_reservation_carries_only_what_it_calls() -> None:
    source = load_script_source("get_reservation")
    assert set(_DEFINES.findall(source)) == {
        "now_ms",
        "fail",
        "load_reservation",
        "reply",
        "record",
    }


def test_every_script_resolves() -> None:
    for name in SCRIPTS:
        assert load_script_source(name).endswith((lua_dir() / f"{name}.lua").read_text())
