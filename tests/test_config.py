"""Settings come from FLASHSALE_* variables (or .env) and a bad one is one line naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import ConfigurationError
from flashsale.settings import load as load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FLASHSALE_* variable or .env of the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("FLASHSALE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_without_variables_the_servers_are_embedded() -> None:
    settings = load_settings()
    assert settings.redis_url is None and settings.database_url is None
    assert settings.data_dir == Path(".flashsale")
    assert settings.redis_appendfsync == "everysec"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)


def test_variables_override_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_REDIS_URL", "redis://cache.internal:6380/2")
    monkeypatch.setenv("FLASHSALE_DATABASE_URL", "postgresql://app@db.internal:5432/sales")
    monkeypatch.setenv("FLASHSALE_DATA_DIR", "/var/lib/flashsale")
    monkeypatch.setenv("FLASHSALE_REDIS_APPENDFSYNC", "always")
    monkeypatch.setenv("FLASHSALE_PARTITIONS", "8")
    monkeypatch.setenv("FLASHSALE_API_PORT", "9000")
    settings = load_settings()
    assert settings.redis_url == "redis://cache.internal:6380/2"
    assert settings.database_url == "postgresql://app@db.internal:5432/sales"
    assert settings.data_dir == Path("/var/lib/flashsale")
    assert settings.redis_appendfsync == "always"
    assert settings.partitions == 8
    assert settings.api_port == 9000


def test_an_empty_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_REDIS_URL", "")
    assert load_settings().redis_url is None


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FLASHSALE_REDIS_URL=redis://from-dotenv:6379/0\n")
    assert load_settings().redis_url == "redis://from-dotenv:6379/0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FLASHSALE_REDIS_URL", "garbage"),
        ("FLASHSALE_REDIS_URL", "redis://"),
        ("FLASHSALE_REDIS_URL", "redis://localhost:notaport/0"),
        ("FLASHSALE_DATABASE_URL", "mysql://db/sales"),
        ("FLASHSALE_DATABASE_URL", "postgresql:///sales"),
        ("FLASHSALE_REDIS_APPENDFSYNC", "sometimes"),
        ("FLASHSALE_PARTITIONS", "zero"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_a_lua_dir_without_reserve_lua_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "no-scripts"
    empty.mkdir()
    (empty / "commit.lua").write_text("-- not the reserve script\n")
    monkeypatch.setenv("FLASHSALE_LUA_DIR", str(empty))
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("FLASHSALE_LUA_DIR: ")
    assert "reserve.lua" in message and str(empty) in message
    assert "\n" not in message


def test_each_layer_reads_only_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from api.settings import ApiSettings
    from engine.config import EngineSettings
    from engine.config import load_settings as load_layer
    from sync_worker.settings import WorkerSettings

    monkeypatch.setenv("FLASHSALE_PARTITIONS", "4")
    monkeypatch.setenv("FLASHSALE_API_PORT", "9001")
    monkeypatch.setenv("FLASHSALE_WORKER_BLOCK_MS", "250")
    engine = load_layer(EngineSettings)
    api = load_layer(ApiSettings)
    worker = load_layer(WorkerSettings)
    assert (engine.partitions, api.partitions, worker.partitions) == (4, 4, 4)
    assert not hasattr(engine, "api_port") and not hasattr(engine, "worker_block_ms")
    assert api.api_port == 9001 and not hasattr(api, "worker_block_ms")
    assert worker.worker_block_ms == 250 and not hasattr(worker, "api_port")
    everything = load_settings()
    assert isinstance(everything, ApiSettings) and isinstance(everything, WorkerSettings)


def test_a_bad_value_names_its_variable_whichever_layer_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from api.settings import ApiSettings
    from engine.config import load_settings as load_layer

    monkeypatch.setenv("FLASHSALE_API_PORT", "99999")
    with pytest.raises(ConfigurationError, match=r"^FLASHSALE_API_PORT: "):
        load_layer(ApiSettings)


def test_the_engine_reads_no_environment_when_given_no_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redis.asyncio import Redis

    from engine import ReservationEngine

    monkeypatch.setenv("FLASHSALE_PARTITIONS", "8")
    monkeypatch.setenv("FLASHSALE_HOLD_TTL_SECONDS", "5")
    engine = ReservationEngine(Redis())  # no connection is made before a command
    assert engine.settings.partitions == 1
    assert engine.settings.hold_ttl_seconds == 600


def test_a_bad_url_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHSALE_REDIS_URL", "http://admin:s3cret@cache.internal:6379/0")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    assert "s3cret" not in str(refused.value)
    assert "admin:***@cache.internal" in str(refused.value)
    monkeypatch.setenv("FLASHSALE_REDIS_URL", "redis://admin:s3cret@cache.internal:port/0")
    with pytest.raises(ConfigurationError, match=r"invalid port") as garbled:
        load_settings()
    assert "s3cret" not in str(garbled.value)
