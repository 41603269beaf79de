"""Placeholder: being written."""

from .provider import ProviderEmulator


class AppleEmulator(ProviderEmulator):
    name = "apple"
    prefix = "/apple"
    account_name = "apple"
