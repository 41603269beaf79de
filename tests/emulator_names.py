"""Every name a write handed to a provider, from the emulator's test-only log
(`/_emulator/names`): uploads, new assets, versions, renames, moves and folders. A
temporary name that reached the provider shows here even if the asset was deleted after."""

from __future__ import annotations


def names_used(emu, provider: str | None = None) -> list[dict]:
    """[{provider, event, name, where}] in order, optionally of one provider only."""
    logged = emu.control.get("/_emulator/names").raise_for_status().json()["names"]
    return [n for n in logged if provider is None or n["provider"] == provider]


def clear_names(emu) -> None:
    emu.control.delete("/_emulator/names").raise_for_status()
