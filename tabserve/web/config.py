"""Settings of the service, read from the environment once, when the app is created (the
variables' defaults and checks are `tabserve.settings`'s). Imports nothing heavy at the top:
gunicorn.conf.py may load it before numpy (see `serving.process`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tabserve.model.trust import Trust
from tabserve.settings import (DRIFT_MIN_RECORDS, MAX_BATCH_RECORDS, SPEEDUPS,  # noqa: F401
                               ConfigError, environment, metrics_directory, model_name,
                               model_path, positive_int, speedups_off, switch)

if TYPE_CHECKING:
    from tabserve.web.auth import ApiKeys


@dataclass(frozen=True)
class Settings:
    model_path: Path = Path("model.bin")
    max_batch_records: int = MAX_BATCH_RECORDS
    max_body_bytes: int = 32 * 1024 * 1024
    model_name: str = ""  # the Open Inference Protocol's model name; empty: the target's name
    speedups_off: frozenset[str] = frozenset()  # see SPEEDUPS
    # which model files are opened: signed with the key, holding pickle (model.bundle.Trust)
    trust: Trust = field(default_factory=Trust)
    api_keys: ApiKeys | None = field(default=None, repr=False)  # None: no key needed
    monitoring: bool = True  # count records for drift (serving.drift)
    drift_min_records: int = DRIFT_MIN_RECORDS
    metrics_dir: Path | None = None  # Prometheus' multiprocess directory; None: one process

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from `MODEL_PATH`, `MAX_BATCH_RECORDS`, `MAX_BODY_BYTES`, `MODEL_NAME`,
        `SPEEDUPS_OFF`, `MODEL_SIGNING_KEY` or `MODEL_SIGNING_KEY_FILE`, `ALLOW_PICKLE`, `API_KEYS_FILE` or
        `API_KEYS` (and `METRICS_WITHOUT_KEY`), `MONITORING`, `DRIFT_MIN_RECORDS`,
        `PROMETHEUS_MULTIPROC_DIR`."""
        from tabserve.web.auth import ApiKeys

        env = environment() if env is None else env
        return cls(
            model_path=model_path(env),
            max_batch_records=positive_int(env, "MAX_BATCH_RECORDS", cls.max_batch_records),
            max_body_bytes=positive_int(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            model_name=model_name(env),
            speedups_off=speedups_off(env),
            trust=Trust.from_env(env),
            api_keys=ApiKeys.from_env(env),
            monitoring=switch(env, "MONITORING", cls.monitoring),
            drift_min_records=positive_int(env, "DRIFT_MIN_RECORDS", cls.drift_min_records),
            metrics_dir=metrics_directory(env),
        )

    def served_model_name(self, target: str) -> str:
        """The model's name in the Open Inference Protocol: `MODEL_NAME`, else the target's."""
        return self.model_name or target
