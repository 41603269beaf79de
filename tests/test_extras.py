"""Without an optional extra, the part that needs it names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from assetfs.config import parse_config
from assetfs.extras import MissingExtra
from assetfs.providers.registry import build_provider
from assetfs.stats import Stats


def test_the_emulator_without_its_extra_names_it():
    hide = "import sys, runpy; sys.modules['starlette'] = None; sys.argv = ['assetfs', 'emulator', '--port', '0']; "
    run = subprocess.run(
        [sys.executable, "-c", hide + "runpy.run_module('assetfs', run_name='__main__')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "pip install 'assetfs[emulator]'" in run.stderr and "missing: starlette" in run.stderr


def test_a_fleet_without_its_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "coredis", None)  # as if not installed
    config = parse_config(
        {
            "shared": {"redis": "redis://127.0.0.1:1/0"},
            "accounts": {"a": {"provider": "spectrum", "base_url": "http://127.0.0.1:1", "client": "c", "token": "t"}},
        }
    )
    with pytest.raises(MissingExtra, match=r"pip install 'assetfs\[fleet\]'"):
        build_provider("a", config, Stats(), 5.0)
