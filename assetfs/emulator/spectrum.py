"""Placeholder: being written."""

from .provider import ProviderEmulator


class SpectrumEmulator(ProviderEmulator):
    name = "spectrum"
    prefix = "/spectrum"
    account_name = "carhartt"
