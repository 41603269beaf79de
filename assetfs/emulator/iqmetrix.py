"""Placeholder: being written."""

from .provider import ProviderEmulator


class IQmetrixEmulator(ProviderEmulator):
    name = "iqmetrix"
    prefix = "/iqmetrix"
    account_name = "stores"
