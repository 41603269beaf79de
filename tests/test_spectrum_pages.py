"""Spectrum's listing with pages in flight, in process against the emulator: once a page comes
full, the next ones are asked before it is read; the listing is still complete and in order,
ends at the first short page without waiting for the pages asked past it, and fails when a
page it needs fails."""

from __future__ import annotations

import httpx
import pytest
import trio

from assetfs.config import parse_config
from assetfs.errors import ProviderError
from assetfs.providers import spectrum
from assetfs.providers.registry import build_provider
from assetfs.stats import Stats

ACCOUNT = "carhartt"
TEAM_ORG = "7000000000000300418"  # six assets
PATIENCE = 10  # seconds a listing may take before the test calls it stuck


def listed_in_order(emu) -> list[str]:
    """The organization's asset keys in the API's order, from one page holding them all."""
    account = emu.account("spectrum")
    with httpx.Client(base_url=account["base_url"], headers={"SPECTRUM_API_TOKEN": account["token"]}) as api:
        r = api.get(f"/api/assets/saved/client/carhartt/organization/{TEAM_ORG}", params={"pageSize": 100})
        r.raise_for_status()
    return [f"asset/{a['id']}" for a in r.json()["contents"]]


def list_team(emu, monkeypatch, page_size: int, answer):
    """The organization listed with pages of `page_size`, each page's request going through
    `answer(page, params, send)` (send: the real request); (keys listed, pages asked in order)."""
    monkeypatch.setattr(spectrum, "PAGE_SIZE", page_size)
    asked: list[int] = []

    async def main():
        provider = build_provider(
            ACCOUNT, parse_config({"accounts": {ACCOUNT: emu.config["accounts"][ACCOUNT]}}), Stats(), 30
        )
        send = provider.http.json

        async def json(method, path, params=None, **kwargs):
            asked.append(params["page"])
            return await answer(params["page"], params, lambda p: send(method, path, params=p, **kwargs))

        provider.http.json = json
        try:
            with trio.fail_after(PATIENCE):
                entries = await provider.list_dir(spectrum._org_entry(TEAM_ORG))
        finally:
            await provider.close()
        return [e.key for e in entries]

    return trio.run(main), asked


@pytest.mark.parametrize("past_the_end", ["never answer", "fail"])
def test_the_next_pages_are_asked_before_one_is_answered(emu, monkeypatch, past_the_end):
    """Pages of one asset: page 2's answer is held until page 2 + PAGES_AHEAD - 1 is asked
    (a barrier that only pages in flight get past); pages past the empty 7th never answer,
    or fail, and the listing ends without them."""
    last_ahead = 2 + spectrum.PAGES_AHEAD - 1
    asked_far_enough = trio.Event()

    async def answer(page, params, send):
        if page == last_ahead:
            asked_far_enough.set()
        if page == 2:
            await asked_far_enough.wait()
        if page > 7:
            if past_the_end == "fail":
                raise ProviderError("a page past the end")
            await trio.sleep_forever()
        return await send(params)

    keys, asked = list_team(emu, monkeypatch, 1, answer)
    assert keys == listed_in_order(emu)
    # Each page asked once, up to PAGES_AHEAD past the last full one (the 6th).
    assert sorted(asked) == list(range(1, 6 + spectrum.PAGES_AHEAD + 1))


async def as_sent(page, params, send):
    return await send(params)


@pytest.mark.parametrize(
    "page_size,pages_read",
    [(2, 4), (3, 3), (4, 2), (500, 1)],
    ids=["exact-multiple-of-2", "exact-multiple-of-3", "short-last-page", "one-short-page"],
)
def test_the_listing_is_complete_and_in_order(emu, monkeypatch, page_size, pages_read):
    keys, asked = list_team(emu, monkeypatch, page_size, as_sent)
    assert keys == listed_in_order(emu)
    # Each page asked once, up to PAGES_AHEAD past the last full one; a listing that ends on
    # a full page reads the empty one after it; one short page is one request.
    last_full = pages_read - 1
    assert sorted(asked) == list(range(1, (last_full + spectrum.PAGES_AHEAD if last_full else 1) + 1))


def test_an_api_that_ignores_page_ends_at_the_first_page_with_nothing_new(emu, monkeypatch):
    async def page_one_always(page, params, send):
        return await send({**params, "page": 1})

    keys, asked = list_team(emu, monkeypatch, 2, page_one_always)
    assert keys == listed_in_order(emu)[:2]
    assert sorted(asked) == list(range(1, 2 + spectrum.PAGES_AHEAD + 1))  # page 2 was full too


def test_a_page_that_fails_fails_the_listing(emu, monkeypatch):
    async def third_fails(page, params, send):
        if page == 3:
            raise ProviderError("page 3 refused")
        return await send(params)

    with pytest.raises(ProviderError, match="page 3 refused"):
        list_team(emu, monkeypatch, 1, third_fails)
