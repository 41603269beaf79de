"""What every provider emulator offers the server: routes, seeded data, a config section."""

from __future__ import annotations

from starlette.routing import BaseRoute

from .app import Emulator
from .blobs import Blob


class ProviderEmulator:
    """Base of the four provider emulators; each mounts its routes under `prefix`,
    as if it had a host of its own (`base_url` = emulator URL + prefix)."""

    name = ""  # provider name as in the config file: spectrum, iqmetrix, apple, mudstack
    prefix = ""  # e.g. "/spectrum"
    account_name = ""  # name of its section in the written config (top-level directory of the mount)

    def __init__(self, emu: Emulator):
        self.emu = emu

    def routes(self) -> list[BaseRoute]:
        return []

    def extra_mounts(self) -> list[BaseRoute]:
        """Routes outside `prefix`: another host of the same provider (an OAuth server,
        an upload endpoint)."""
        return []

    def control_routes(self) -> list[BaseRoute]:
        """Test-only routes under /_emulator/<name>/ that change the provider's data the way
        a user elsewhere would, where its API has no way to (a read-only API, no delete)."""
        return []

    def cdn_blob(self, blob: Blob, query) -> Blob:
        """What a CDN request for `blob` serves, by its query (Spectrum scales its images)."""
        return blob

    def account_config(self, base_url: str) -> dict:
        """The `[accounts.<account_name>]` table for an assetfs config pointing at this emulator."""
        return {"provider": self.name, "base_url": base_url + self.prefix}

    def curl_examples(self, base_url: str) -> list[str]:
        """One or two curl lines a user can paste to try this API."""
        return []
