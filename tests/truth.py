"""The tests' shared helpers: what the provider says, fetched straight from the emulator's API
(not through the mount), so that tests can compare the mount's bytes and names with the
source; checksums; waiting for a condition."""

from __future__ import annotations

import hashlib
import time

import httpx


def spectrum_assets(account: dict, org: str) -> list[dict]:
    headers = {"SPECTRUM_API_TOKEN": account["token"]}
    url = f"{account['base_url']}/api/assets/saved/client/{account['client']}/organization/{org}"
    out, page = [], 1
    with httpx.Client(timeout=30) as client:
        while True:
            contents = (
                client.get(url, params={"page": page, "pageSize": 1000}, headers=headers)
                .raise_for_status()
                .json()["contents"]
            )
            out += contents
            if len(contents) < 1000:
                return out
            page += 1


def download(url: str) -> bytes:
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        return client.get(url).raise_for_status().content


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def wait_for(condition, seconds: float = 30.0):
    """The condition's first true value, asked every 0.25 s; an AssertionError after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


def asked(emu) -> dict[str, int]:
    """The emulator's requests but the connection warm-ups (an OPTIONS a fetched listing sends
    in the background, read/pool.py, which may land after a test's reset of the counts)."""
    return {k: n for k, n in emu.requests().items() if not k.startswith("OPTIONS ")}
