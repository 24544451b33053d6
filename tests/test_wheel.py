"""The built wheel carries the Lua scripts, and an installed copy loads them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    if importlib.util.find_spec("hatchling") is not None:
        # No isolated build env: nothing to download, and seconds instead of tens of seconds.
        command = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)]
    else:
        command = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", str(out)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
    (built,) = out.glob("flashsale-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_contains_every_lua_script_under_engine_lua(wheel: Path) -> None:
    sources = sorted(p.relative_to(REPO / "lua").as_posix() for p in (REPO / "lua").rglob("*.lua"))
    assert "reserve.lua" in sources
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [s for s in sources if f"engine/lua/{s}" not in names]
    assert missing == []
    assert {"engine/scripts.py", "flashsale/cli.py"} <= names


@pytest.mark.slow
def test_a_fresh_venv_with_the_wheel_loads_a_script_from_the_installed_package(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180)
    python = venv / "bin" / "python"
    # With its declared dependencies, as a user installs it: `engine/__init__` imports pydantic
    # and orjson, so a --no-deps install plus redis alone could not import the engine.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    probe = "import engine.scripts as s; print(s.lua_dir()); print(s.load_script_source('reserve'))"
    # cwd outside the repository, so only the installed copy can answer.
    result = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lua_dir, source = result.stdout.split("\n", 1)
    assert Path(lua_dir).is_relative_to(venv)
    assert Path(lua_dir).name == "lua" and Path(lua_dir).parent.name == "engine"
    assert (REPO / "lua" / "reserve.lua").read_text().strip() in source

    cli = subprocess.run(
        [str(venv / "bin" / "flashsale"), "--help"], cwd=tmp_path, capture_output=True, timeout=60
    )
    assert cli.returncode == 0, cli.stderr
