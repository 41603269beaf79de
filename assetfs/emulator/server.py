"""`assetfs emulator`: build the providers, bind, print the base URL, write a config, serve."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from pathlib import Path

import tomli_w
import uvicorn

from .app import Emulator, build_app
from .apple import AppleEmulator
from .iqmetrix import IQmetrixEmulator
from .mudstack import MudstackEmulator
from .spectrum import SpectrumEmulator

PROVIDERS = (SpectrumEmulator, IQmetrixEmulator, AppleEmulator, MudstackEmulator)


def build(emu: Emulator):
    """The provider emulators over one shared context, and the app serving them."""
    providers = [cls(emu) for cls in PROVIDERS]
    return providers, build_app(emu, providers)


def config_document(providers, base_url: str, cache_dir: str | None = None) -> dict:
    """An assetfs config (the format of the README's Configuration section) for this emulator."""
    doc: dict = {"cache": {"metadata_ttl": "60s"}}
    if cache_dir:
        doc["cache"]["dir"] = cache_dir
    doc["accounts"] = {p.account_name: p.account_config(base_url) for p in providers}
    return doc


def write_config(path: Path, providers, base_url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# assetfs configuration for a local emulator; its demo credentials are not secrets.\n"
        + tomli_w.dumps(config_document(providers, base_url))
    )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls on small answers
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve(
    emu: Emulator, host: str = "127.0.0.1", port: int = 0, config_path: Path | None = None, quiet: bool = False
) -> None:
    started = time.monotonic()
    providers, app = build(emu)
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    base_url = f"http://{shown_host}:{bound_port}"
    if config_path:  # written before the URL is printed, so whoever waits for the URL finds it
        write_config(config_path, providers, base_url)
    print(base_url, flush=True)
    if not quiet:
        _print_tour(providers, base_url, config_path, time.monotonic() - started)
    # httptools: request bodies parsed in C, as a provider's own front end does. With uvicorn's
    # pure-Python parser a chunked body (a streamed upload) cost the emulator a third more
    # CPU than the same bytes with a Content-Length, which measured the emulator, not the mount.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_keep_alive=30, lifespan="off", http="httptools"
    )
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        emu.blobs.close()


def _print_tour(providers, base_url: str, config_path: Path | None, ready_in: float) -> None:
    out = sys.stdout
    print(f"assetfs emulator ready in {ready_in:.2f}s: four provider APIs on {base_url}", file=out)
    for p in providers:
        print(f"  {p.name:9s} {base_url}{p.prefix}", file=out)
        for line in p.curl_examples(base_url):
            print(f"            {line}", file=out)
    if config_path:
        print(f"assetfs config for it written to {config_path}", file=out)
    print("Ctrl-C stops it.", file=out, flush=True)


logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
