"""Which module serves which `provider = "…"` of the config."""

from __future__ import annotations

import importlib

from ..extras import require
from ..stats import Stats
from .base import Provider

MODULES = {"spectrum": "spectrum", "iqmetrix": "iqmetrix", "apple": "apple", "mudstack": "mudstack"}


def build_provider(account: str, config, stats: Stats, timeout: float) -> Provider:
    """A provider client for one account of the config, with its own HTTP client; with
    `[shared]`, one that shares its account's budget and listings with the whole fleet."""
    settings = config.accounts[account]
    module = importlib.import_module(f".{MODULES[settings.provider]}", __package__)
    provider = module.create(account, settings, config, stats, settings.timeout or timeout)
    provider.http.set_rate_limit(settings.rate_limit)
    if config.shared is not None:
        require("fleet")  # only fleets need Redis: without it, say which extra to install
        from .. import fleet

        fleet.join(provider, account, config, fleet.connect(config))
    return provider
