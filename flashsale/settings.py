"""The composition root's settings: every layer's, plus where the embedded servers live.

Commands read them once (`flashsale.ui.settings_or_exit`) and hand each layer this object, which is
an `EngineSettings`, an `ApiSettings` and a `WorkerSettings` at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from api.settings import ApiSettings
from engine.config import load_settings
from sync_worker.settings import WorkerSettings


class Settings(ApiSettings, WorkerSettings):
    data_dir: Path = Path(".flashsale")  # the embedded servers' data (Redis AOF, Postgres)
    redis_appendfsync: Literal["always", "everysec", "no"] = "everysec"


def load(**overrides: object) -> Settings:
    return load_settings(Settings, **overrides)
