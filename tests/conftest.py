"""Shared fixtures: a real emulator process over HTTP on 127.0.0.1."""

from __future__ import annotations

import os  # noqa: F401
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

SEEDS = Path(__file__).parent.parent / "assetfs" / "emulator" / "seeds"


class RunningEmulator:
    """An `assetfs emulator` subprocess and a client for its control routes."""

    def __init__(self, tmp: Path, *args: str, port: int = 0):
        self.config_path = tmp / "emulator.toml"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "assetfs",
                "emulator",
                "--port",
                str(port),
                "--quiet",
                "--data-dir",
                str(tmp / "emulator-data"),
                "--write-config",
                str(self.config_path),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"emulator did not start: {line!r} {self.process.stderr.read()}")
        self.url = line
        self.config = tomllib.loads(self.config_path.read_text())
        self.control = httpx.Client(base_url=self.url, timeout=30)

    def account(self, provider: str) -> dict:
        return next(a for a in self.config["accounts"].values() if a["provider"] == provider)

    def set_faults(self, **values) -> dict:
        return self.control.post("/_emulator/faults", json=values).raise_for_status().json()

    def clear_faults(self) -> None:
        self.set_faults(
            latency=0,
            hang=False,
            fail_status=0,
            fail_count=0,
            retry_after=0,
            reset_mid_body=0,
            truncate_body=0,
            reset_mid_upload=0,
            only_prefix="",
        )

    def requests(self) -> dict[str, int]:
        return self.control.get("/_emulator/requests").raise_for_status().json()["counts"]

    def reset_requests(self) -> None:
        self.control.delete("/_emulator/requests").raise_for_status()

    def set_rate_limit(self, provider: str, limit: int, window: float = 60) -> None:
        self.control.post(
            "/_emulator/rate-limits", json={provider: {"limit": limit, "window": window}}
        ).raise_for_status()

    def set_tokens(self, **body) -> None:
        self.control.post("/_emulator/tokens", json=body).raise_for_status()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.control.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def emulator_fixture(name: str, *args: str, scope: str = "module"):
    """A fixture called `name`: an emulator started once (for the session, or for a module
    whose tests change its data or switch what must reach no other test) and stopped after."""

    @pytest.fixture(scope=scope, name=name)
    def running(tmp_path_factory):
        emu = RunningEmulator(tmp_path_factory.mktemp(name), *args)
        yield emu
        emu.stop()

    return running


# One emulator for the session, its faults cleared before each use (`emu`).
emulator = emulator_fixture("emulator", scope="session")


@pytest.fixture
def emu(emulator):
    emulator.clear_faults()
    emulator.set_tokens(ttl=None, url_ttl=None)
    yield emulator
    emulator.clear_faults()


@pytest.fixture
def fresh_emulator(tmp_path):
    """A private emulator for tests that change its data or need special start options."""
    started: list[RunningEmulator] = []

    def start(*args: str, port: int = 0) -> RunningEmulator:
        """`port`: a fixed one, e.g. to bring a stopped emulator back where the mount expects it."""
        e = RunningEmulator(tmp_path / f"emu{len(started)}", *args, port=port)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()


def seed_json(name: str):
    """A JSON example copied verbatim from a provider's documentation page."""
    import json

    return json.loads((SEEDS / name).read_text())


@pytest.fixture
def mount(tmp_path):
    """Start mounts with `mount(config, options=…, accounts=[…])`; all are unmounted after
    the test, whatever happened in it."""
    from mounting import MountedFS

    mounts: list[MountedFS] = []

    def start(config: dict, **kwargs) -> MountedFS:
        m = MountedFS(tmp_path / f"m{len(mounts)}", config, **kwargs)
        mounts.append(m)
        return m

    yield start
    for m in mounts:
        m.stop()
