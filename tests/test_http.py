"""The shared HTTP client without a kernel: a host that does not answer is failed fast,
probed in the background, and trusted again as soon as it answers a probe, or the next
request's own short question."""

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
        http.subscribe_recovery(lambda: recovered.append(True))
        http.note_unreachable(url, "ConnectTimeout")   # as if it had just timed out
        await trio.sleep(0.5)                         # no request meanwhile: the background probe asks
        assert recovered == [True]                    # a probe was answered: the outage is over
        answer = await http.json("GET", url, headers={"SPECTRUM_API_TOKEN": account["token"]})
        assert answer["contents"]
        await http.aclose()

    trio.run(main)
    assert any(k.startswith("HEAD /spectrum/api/") for k in emu.requests()), emu.requests()  # the probe


def spectrum_org_url(account: dict) -> str:
    return f"{account['base_url']}/api/assets/saved/client/{account['client']}/organization/{account['organizations'][0]}"


def test_the_first_request_after_a_host_answers_again_asks_it_at_once(emu, monkeypatch):
    """No waiting for the background probe: a request meeting a host held down asks it
    (one short HEAD), and goes on when it answers."""
    monkeypatch.setattr(http_module, "PROBE_EVERY", 60.0)   # the background probe never comes in time
    account = emu.account("spectrum")
    url = spectrum_org_url(account)
    emu.reset_requests()
    recovered = []

    async def main():
        http = ProviderHTTP(account["base_url"], timeout=30, retries=1)
        http.subscribe_recovery(lambda: recovered.append(True))
        http.note_unreachable(url, "ReadTimeout")      # as if it had just timed out
        started = time.monotonic()
        answer = await http.json("GET", url, headers={"SPECTRUM_API_TOKEN": account["token"]})
        assert answer["contents"] and time.monotonic() - started < 1.0
        await http.aclose()

    trio.run(main)
    assert recovered == [True]
    heads = {k: n for k, n in emu.requests().items() if k.startswith("HEAD ")}
    assert list(heads.values()) == [1], heads


def test_a_host_still_not_answering_is_asked_once_for_all_and_calls_fail_fast(emu, monkeypatch):
    monkeypatch.setattr(http_module, "PROBE_EVERY", 60.0)
    account = emu.account("spectrum")
    url = spectrum_org_url(account)
    emu.set_faults(latency=3, only_prefix="/spectrum/")   # slower than a question waits
    emu.reset_requests()
    failed: list[float] = []

    async def main():
        http = ProviderHTTP(account["base_url"], timeout=30, retries=1)
        http.note_unreachable(url, "ReadTimeout")

        async def call():
            started = time.monotonic()
            with pytest.raises(Unavailable, match="did not answer moments ago"):
                await http.request("GET", url)
            failed.append(time.monotonic() - started)

        async with trio.open_nursery() as nursery:   # a burst of syscalls: one question
            for _ in range(8):
                nursery.start_soon(call)
        await call()                                  # right after it: no new question, at once
        assert failed[-1] < 0.1
        await http.aclose()

    trio.run(main)
    assert len(failed) == 9 and max(failed) < http_module.ASK_TIMEOUT + 0.3, failed
    emu.clear_faults()
    assert [k for k in emu.requests() if k.startswith("HEAD ")] and sum(
        n for k, n in emu.requests().items() if k.startswith("HEAD ")) == 1, emu.requests()
