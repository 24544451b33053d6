"""The composition root's settings: every layer's, plus where the embedded servers live.

Commands read them once (`flashsale.ui.settings_or_exit`) and hand each layer this object, which is
an `EngineSettings`, an `ApiSettings` and a `WorkerSettings` at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import model_validator

from api.settings import ApiSettings
from engine.config import load_settings
from sync_worker.settings import WorkerSettings


class Settings(ApiSettings, WorkerSettings):
    data_dir: Path = Path(".flashsale")  # the embedded servers' data (Redis AOF, Postgres)
    redis_appendfsync: Literal["always", "everysec", "no"] = "everysec"
    # The embedded Redis is a local Redis Cluster (3 primaries, 3 replicas) instead of one
    # server; every client then speaks cluster (it implies redis_cluster).
    embedded_cluster: bool = False

    @model_validator(mode="after")
    def _embedded_cluster_is_a_cluster(self) -> Self:
        if self.embedded_cluster:
            self.redis_cluster = True
        return self


def load(**overrides: object) -> Settings:
    return load_settings(Settings, **overrides)
