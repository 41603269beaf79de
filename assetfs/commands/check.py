"""`assetfs config check`: validate the config and try every account, before mounting.

A mount with a wrong secret still comes up; the mistake only shows as EACCES in some
directory later. Here every account lists its top level and the first entry's contents,
descending until a request was actually made (some levels come straight from the config:
Spectrum organizations, iQmetrix collections, Apple brands), so credentials are tested.
"""

from __future__ import annotations

import argparse
import logging

import trio
from rich.console import Console
from rich.markup import escape

from ..config import Config, load_config
from ..errors import ConfigError
from ..logs import redact_text, setup_logging
from ..providers.registry import build_provider
from ..stats import Stats
from ..units import parse_duration
from . import CommandError

MAX_DEPTH = 4  # levels to descend looking for one that needs the network


async def check_account(name: str, config: Config, timeout: float) -> tuple[bool, str]:
    """(ok, what to say) for one account; never raises."""
    stats = Stats()
    provider = None
    try:
        provider = build_provider(name, config, stats, timeout)
        with trio.fail_after(timeout):
            entries = await provider.list_root()
            if not entries:
                return True, "0 organizations"
            first = await provider.list_dir(entries[0])
            listing, depth = first, 1
            while not stats.counters["requests"] and depth < MAX_DEPTH:
                below = next((e for e in listing if e.is_dir and e.children is None), None)
                if below is None:
                    break
                listing, depth = await provider.list_dir(below), depth + 1
        return True, f"{len(entries)} organization{'s' if len(entries) != 1 else ''}, first lists {len(first)} entries"
    except trio.TooSlowError:
        return False, f"no answer within {timeout:g}s"
    except Exception as e:  # noqa: BLE001 - whatever went wrong is this account's answer
        return False, redact_text(str(e) or type(e).__name__)
    finally:
        if provider is not None:
            with trio.move_on_after(2):
                await provider.close()


async def check_all(config: Config, timeout: float) -> dict[str, tuple[bool, str]]:
    results: dict[str, tuple[bool, str]] = {}

    async def one(name: str) -> None:
        results[name] = await check_account(name, config, timeout)

    async with trio.open_nursery() as nursery:
        for name in config.accounts:
            nursery.start_soon(one, name)
    return results


def run(args: argparse.Namespace) -> int:
    try:
        timeout = parse_duration(args.timeout)
    except ValueError:
        raise CommandError(f"--timeout {args.timeout}: not a duration (e.g. 20, 20s, 1m)") from None
    if timeout <= 0:
        raise CommandError("--timeout: must be more than 0")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        raise CommandError(str(e)) from None
    setup_logging("ERROR")  # retries and warnings would drown the one line per account
    logging.getLogger("assetfs").setLevel(logging.CRITICAL)
    results = trio.run(check_all, config, timeout)
    console = Console(soft_wrap=True)
    for name, settings in config.accounts.items():
        ok, message = results[name]
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        console.print(f"{mark} {escape(name)} ({settings.provider}): {escape(message)}", highlight=False)
    failed = sum(1 for ok, _ in results.values() if not ok)
    return 1 if failed else 0
