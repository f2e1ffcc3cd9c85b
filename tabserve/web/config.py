"""Settings of the service, read from the environment once, when the app is created. Imports
nothing heavy at the top: gunicorn.conf.py loads it before numpy (see `serving.process`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tabserve.serving.process import SPEEDUPS, ConfigError, speedups_off  # noqa: F401

if TYPE_CHECKING:
    from tabserve.web.auth import ApiKeys


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}")
    return value


def _switch(env: dict[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {env[name]!r}")


@dataclass(frozen=True)
class Settings:
    model_path: Path = Path("model.bin")
    max_batch_records: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    model_name: str = ""  # the Open Inference Protocol's model name; empty: the target's name
    speedups_off: frozenset[str] = frozenset()  # see SPEEDUPS
    # with a key, only bundles signed with it are loaded (model.bundle); never shown
    signing_key: bytes | None = field(default=None, repr=False)
    api_keys: ApiKeys | None = field(default=None, repr=False)  # None: no key needed
    monitoring: bool = True  # count records for drift (serving.drift)
    drift_min_records: int = 500  # serving.drift.MIN_RECORDS; the reason is given there

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from `MODEL_PATH`, `MAX_BATCH_RECORDS`, `MAX_BODY_BYTES`, `MODEL_NAME`,
        `SPEEDUPS_OFF`, `MODEL_SIGNING_KEY` or `MODEL_SIGNING_KEY_FILE`, `API_KEYS_FILE` or
        `API_KEYS` (and `METRICS_WITHOUT_KEY`), `MONITORING`, `DRIFT_MIN_RECORDS`."""
        from tabserve.model.bundle import SigningKeyError, signing_key
        from tabserve.web.auth import ApiKeyError, ApiKeys

        env = os.environ if env is None else env
        try:
            key, api_keys = signing_key(env), ApiKeys.from_env(env)
        except (SigningKeyError, ApiKeyError) as err:
            raise ConfigError(str(err)) from None
        return cls(
            model_path=Path(env.get("MODEL_PATH") or "model.bin"),
            max_batch_records=_positive_int(env, "MAX_BATCH_RECORDS", cls.max_batch_records),
            max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            model_name=env.get("MODEL_NAME", "").strip(),
            speedups_off=speedups_off(env),
            signing_key=key,
            api_keys=api_keys,
            monitoring=_switch(env, "MONITORING", cls.monitoring),
            drift_min_records=_positive_int(env, "DRIFT_MIN_RECORDS", cls.drift_min_records),
        )

    def served_model_name(self, target: str) -> str:
        """The model's name in the Open Inference Protocol: `MODEL_NAME`, else the target's."""
        return self.model_name or target
