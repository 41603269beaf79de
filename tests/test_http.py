"""The shared HTTP client without a kernel: a host that does not answer is failed fast,
probed in the background, and trusted again as soon as it answers a probe."""

from __future__ import annotations

import time

import pytest
import trio

from assetfs.providers import http as http_module
from assetfs.providers.http import ProviderHTTP, Unavailable, Unreachable


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connection refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


def test_a_host_that_does_not_answer_is_failed_fast_while_probes_fail(monkeypatch):
    monkeypatch.setattr(http_module, "PROBE_EVERY", 0.2)
    base = closed_port_url()

    async def main():
        http = ProviderHTTP(base, timeout=30, retries=1)
        with pytest.raises(Unreachable):
            await http.request("GET", "first")
        for _ in range(4):   # probes are refused too: every request meanwhile fails at once
            started = time.monotonic()
            with pytest.raises(Unavailable, match="did not answer moments ago"):
                await http.request("GET", "again")
            assert time.monotonic() - started < 0.1
            await trio.sleep(0.25)
        assert http._probing   # still probing
        await http.aclose()

    trio.run(main)


def test_a_held_down_host_that_answers_a_probe_is_trusted_again(emu, monkeypatch):
    monkeypatch.setattr(http_module, "PROBE_EVERY", 0.3)
    emu.reset_requests()
    account = emu.account("spectrum")
    url = f"{account['base_url']}/api/assets/saved/client/{account['client']}/organization/{account['organizations'][0]}"
    recovered = []

    async def main():
        http = ProviderHTTP(account["base_url"], timeout=30, retries=1)
        http.on_recovery = lambda: recovered.append(True)
        http.note_unreachable(url, "ConnectTimeout")   # as if it had just timed out
        with pytest.raises(Unavailable):
            await http.request("GET", url, headers={"SPECTRUM_API_TOKEN": account["token"]})
        await trio.sleep(0.5)
        assert recovered == [True]                    # a probe was answered: the outage is over
        answer = await http.json("GET", url, headers={"SPECTRUM_API_TOKEN": account["token"]})
        assert answer["contents"]
        await http.aclose()

    trio.run(main)
    assert any(k.startswith("HEAD /spectrum/api/") for k in emu.requests()), emu.requests()  # the probe
