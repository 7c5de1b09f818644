"""Plumbing shared by every Baton process: config, logs, ready line, backoff, telemetry."""

from baton.common._backoff import Backoff
from baton.common._config import ConfigError, Settings, load_settings
from baton.common._logging import JsonFormatter, setup_logging
from baton.common._process import ProcessFailed, Service, spawn_baton
from baton.common._ready import announce_ready, parse_ready
from baton.common._telemetry import sampled, setup_tracing

__all__ = [
    "Backoff",
    "ConfigError",
    "JsonFormatter",
    "ProcessFailed",
    "Service",
    "Settings",
    "announce_ready",
    "load_settings",
    "parse_ready",
    "sampled",
    "setup_logging",
    "setup_tracing",
    "spawn_baton",
]
