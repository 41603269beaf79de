"""Shared fixtures: a real emulator process over HTTP on 127.0.0.1; real mounts (skipped,
with the reason, where this machine cannot mount FUSE); and after every test, its mounts' and
emulators' logs read for surprises (logcheck.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import logcheck
import pytest

FUSE_DEVICE = os.environ.get("ASSETFS_TEST_FUSE_DEVICE", "/dev/fuse")  # another path: to test the skip


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "log_expects(*regexes): incidents (tracebacks, unexpected failures) the test expects in the logs"
    )


def why_no_fuse() -> str | None:
    """Why this machine cannot mount a FUSE filesystem, or None if it can."""
    if not os.path.exists(FUSE_DEVICE):
        return f"{FUSE_DEVICE} is missing (a container without FUSE?)"
    try:
        os.close(os.open(FUSE_DEVICE, os.O_RDWR))
    except OSError as e:
        return f"{FUSE_DEVICE} cannot be opened: {e.strerror}"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian: the fuse3 package)"
    return None


def pytest_collection_modifyitems(config, items):
    """Tests that mount (the `mount` marker, or the `mount` fixture) skip with the reason
    where FUSE is not there, instead of failing."""
    reason = why_no_fuse()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs a real FUSE mount: {reason}")
    for item in items:
        if item.get_closest_marker("mount") or "mount" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def logs_without_surprises(request):
    """After the test (and its mounts' unmounting), what its mounts and emulators logged has no
    traceback and no "failed unexpectedly" that the test did not declare with `log_expects`."""
    yield
    expected = [pattern for marker in request.node.iter_markers("log_expects") for pattern in marker.args]
    found = logcheck.surprises(expected)
    if found:
        pytest.fail(
            "unexpected in the logs (declare it with @pytest.mark.log_expects(regex) if the test expects it):\n"
            + "\n\n".join(f"{log}:\n{incident}" for log, incident in found),
            pytrace=False,
        )


SEEDS = Path(__file__).parent.parent / "assetfs" / "emulator" / "seeds"


class RunningEmulator:
    """An `assetfs emulator` subprocess and a client for its control routes."""

    def __init__(self, tmp: Path, *args: str, port: int = 0):
        tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = tmp / "emulator.toml"
        self.log_path = tmp / "emulator.log"
        self._log = open(self.log_path, "wb")
        logcheck.watch(self.log_path, benign=logcheck.EMULATOR_SIDE)
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
            stderr=self._log,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"emulator did not start: {line!r} {self.log()}")
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

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
        self._log.close()
        logcheck.stopped(self.log_path)


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
