"""Placeholder: being written."""

from .provider import ProviderEmulator


class MudstackEmulator(ProviderEmulator):
    name = "mudstack"
    prefix = "/mudstack"
    account_name = "studio"
