"""The shared HTTP client without a kernel: a host that does not answer is failed fast,
probed in the background, and trusted again as soon as it answers a probe, or the next
request's own short question."""

from __future__ import annotations

import time
from datetime import UTC

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
        for _ in range(4):  # probes are refused too: every request meanwhile fails at once
            started = time.monotonic()
            with pytest.raises(Unavailable, match="did not answer moments ago"):
                await http.request("GET", "again")
            assert time.monotonic() - started < 0.1
            await trio.sleep(0.25)
        assert http._probing  # still probing
        await http.aclose()

    trio.run(main)


def test_a_held_down_host_that_answers_a_probe_is_trusted_again(emu, monkeypatch):
    monkeypatch.setattr(http_module, "PROBE_EVERY", 0.3)
    emu.reset_requests()
    account = emu.account("spectrum")
    url = (
        f"{account['base_url']}/api/assets/saved/client/{account['client']}/organization/{account['organizations'][0]}"
    )
    recovered = []

    async def main():
        http = ProviderHTTP(account["base_url"], timeout=30, retries=1)
        http.subscribe_recovery(lambda: recovered.append(True))
        http.note_unreachable(url, "ConnectTimeout")  # as if it had just timed out
        await trio.sleep(0.5)  # no request meanwhile: the background probe asks
        assert recovered == [True]  # a probe was answered: the outage is over
        answer = await http.json("GET", url, headers={"SPECTRUM_API_TOKEN": account["token"]})
        assert answer["contents"]
        await http.aclose()

    trio.run(main)
    assert any(k.startswith("HEAD /spectrum/api/") for k in emu.requests()), emu.requests()  # the probe


def spectrum_org_url(account: dict) -> str:
    return (
        f"{account['base_url']}/api/assets/saved/client/{account['client']}/organization/{account['organizations'][0]}"
    )


def test_the_first_request_after_a_host_answers_again_asks_it_at_once(emu, monkeypatch):
    """No waiting for the background probe: a request meeting a host held down asks it
    (one short HEAD), and goes on when it answers."""
    monkeypatch.setattr(http_module, "PROBE_EVERY", 60.0)  # the background probe never comes in time
    account = emu.account("spectrum")
    url = spectrum_org_url(account)
    emu.reset_requests()
    recovered = []

    async def main():
        http = ProviderHTTP(account["base_url"], timeout=30, retries=1)
        http.subscribe_recovery(lambda: recovered.append(True))
        http.note_unreachable(url, "ReadTimeout")  # as if it had just timed out
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
    emu.set_faults(latency=3, only_prefix="/spectrum/")  # slower than a question waits
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

        async with trio.open_nursery() as nursery:  # a burst of syscalls: one question
            for _ in range(8):
                nursery.start_soon(call)
        await call()  # right after it: no new question, at once
        assert failed[-1] < 0.1
        await http.aclose()

    try:
        trio.run(main)
    finally:
        emu.clear_faults()
    assert len(failed) == 9 and max(failed) < http_module.ASK_TIMEOUT + 1.0, failed  # not the 30 s timeout
    assert [k for k in emu.requests() if k.startswith("HEAD ")] and sum(
        n for k, n in emu.requests().items() if k.startswith("HEAD ")
    ) == 1, emu.requests()


# -- one policy for every request ---------------------------------------------------------


def test_retry_after_in_seconds_or_as_an_http_date():
    from datetime import datetime, timedelta
    from email.utils import format_datetime

    import httpx

    from assetfs.providers.http import retry_after

    assert retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert retry_after(httpx.Response(429, headers={"X-RateLimit-ResetSeconds": "1.5"})) == 1.5  # iQmetrix
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= retry_after(httpx.Response(503, headers={"Retry-After": date})) <= 30
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None


def mudstack(emu):
    from assetfs.config import parse_config
    from assetfs.providers.registry import build_provider
    from assetfs.stats import Stats

    config = parse_config({"accounts": {"studio": emu.account("mudstack")}})
    return build_provider("studio", config, Stats(), 10.0)


def test_the_token_service_is_asked_under_the_same_policy(emu):
    """A 503 with Retry-After from the token service is waited out like any request's."""
    provider = mudstack(emu)
    emu.reset_requests()
    emu.set_faults(fail_status=503, fail_count=1, retry_after=1, only_prefix="/mudstack/auth/")

    async def main():
        started = time.monotonic()
        headers = await provider.http.auth.headers(provider.http)
        await provider.http.aclose()
        return headers, time.monotonic() - started

    try:
        headers, took = trio.run(main)
    finally:
        emu.clear_faults()
    assert headers["Authorization"].startswith("Bearer ") and took >= 1.0
    assert emu.requests().get("POST /mudstack/auth/token") == 2


@pytest.mark.parametrize("status, tries", [(429, 2), (500, 1)])
def test_a_request_that_must_not_happen_twice_is_retried_only_when_refused_untaken(emu, status, tries):
    """retry=NOT_TAKEN (uploads): a 429 said the provider did not act on it, so it is sent
    again; a 500 may have come after the work was done, so it is not."""
    provider = mudstack(emu)
    url = provider.http.auth.token_url
    emu.reset_requests()
    emu.set_faults(fail_status=status, fail_count=1, only_prefix="/mudstack/auth/")

    async def main():
        try:
            credentials = {k: emu.account("mudstack")[k] for k in ("account_id", "key", "secret")}
            return (
                await provider.http.request(
                    "POST", url, auth=False, retry=http_module.NOT_TAKEN, expect=(200, 201), json=credentials
                )
            ).status_code
        except http_module.ProviderError as e:
            return e
        finally:
            await provider.http.aclose()

    try:
        answer = trio.run(main)
    finally:
        emu.clear_faults()
    assert emu.requests().get("POST /mudstack/auth/token") == tries
    assert answer in (200, 201) if tries == 2 else isinstance(answer, http_module.Retryable)


def test_a_listing_page_is_freed_once_read_without_the_garbage_collector(emu):
    """httpx's response and its stream refer to each other: unless the loop is cut, a page's
    body (megabytes for a big listing) waits for the collector."""
    import gc
    import weakref

    account = emu.account("spectrum")
    seen = []

    async def main():
        http = ProviderHTTP(account["base_url"], timeout=30, retries=1)
        send = http.client.request

        async def watched(*args, **kwargs):
            response = await send(*args, **kwargs)
            seen.append(weakref.ref(response))
            return response

        http.client.request = watched
        gc.disable()
        try:
            answer = await http.json("GET", spectrum_org_url(account), headers={"SPECTRUM_API_TOKEN": account["token"]})
            assert answer["contents"] and seen
            assert all(ref() is None for ref in seen)
        finally:
            gc.enable()
            await http.aclose()

    trio.run(main)
