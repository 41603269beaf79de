"""What reached the emulator from a mount: every name a write handed to a provider (the
test-only `/_emulator/names` log: uploads, new assets, versions, renames, moves, folders) and
the requests that could change something. A temporary name that reached the provider shows
here even if the asset was deleted after."""

from __future__ import annotations


def names_used(emu, provider: str | None = None) -> list[dict]:
    """[{provider, event, name, where}] in order, optionally of one provider only."""
    logged = emu.control.get("/_emulator/names").raise_for_status().json()["names"]
    return [n for n in logged if provider is None or n["provider"] == provider]


def clear_names(emu) -> None:
    emu.control.delete("/_emulator/names").raise_for_status()


TOKEN_ROUTES = ("/oauth2/token", "/auth/token")  # a token renewed meanwhile changes no asset


def writes_sent(emu) -> list[str]:
    """Requests since the last `reset_requests()` that could change something at a provider
    (reads are GET and HEAD; asking for a token is neither)."""
    return [k for k in emu.requests() if k.split(" ")[0] not in ("GET", "HEAD") and not k.endswith(TOKEN_ROUTES)]
