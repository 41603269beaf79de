"""The configuration file and mount options: what is accepted, and how mistakes are told."""

from __future__ import annotations

import os

import pytest

from assetfs.config import load_config, parse_config
from assetfs.errors import ConfigError
from assetfs.options import parse_mount_options

SPECTRUM = {"provider": "spectrum", "base_url": "https://api.example", "client": "c", "token": "t0k3n"}


def config_of(**account) -> dict:
    return {"accounts": {"acme": {**SPECTRUM, **account}}}


def problem(data: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return str(e.value)


def test_a_full_config_with_every_provider_parses(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("""
[cache]
dir = "~/somewhere"
max_size = "5GiB"
metadata_ttl = "5m"

[accounts.a]
provider = "spectrum"
base_url = "https://api.spectrumcustomizer.com"
client = "carhartt"
organizations = ["7000000000000300322"]
token = "x"
timeout = "20s"

[accounts.b]
provider = "iqmetrix"
base_url = "https://ams.iqmetrix.net"
auth_url = "https://accounts.iqmetrix.net/v1"
collections = { logos = ["732130d2-b673-461c-812b-f2b614d6076e"] }
username = "u"
password = "p"
client_id = "i"
client_secret = "s"

[accounts.c]
provider = "apple"
base_url = "https://apple.example"
organizations = { "1" = ["2"] }
client_id = "i"
client_secret = "s"
default_intent = "COVER_PHOTO"

[accounts.d]
provider = "mudstack"
base_url = "https://api.mudstack.com"
account_id = "a"
key = "k"
secret = "s"
workspaces = ["Game Art"]
""")
    config = load_config(path)
    assert config.cache.max_size == 5 << 30 and config.cache.metadata_ttl == 300
    assert config.cache.path == os.path.expanduser("~/somewhere") or str(config.cache.path).endswith("somewhere")
    assert [a.provider for a in config.accounts.values()] == ["spectrum", "iqmetrix", "apple", "mudstack"]
    assert config.accounts["a"].timeout == 20


def test_each_mistake_is_one_line_naming_its_key():
    text = problem({"accounts": {"acme": {**SPECTRUM, "tokn": "x", "client": 5}}, "cache": {"max_size": "lots"}})
    assert "accounts.acme.tokn: unknown key" in text
    assert "accounts.acme.client:" in text
    assert "cache.max_size:" in text
    assert "accounts.acme.provider" in problem({"accounts": {"acme": {**SPECTRUM, "provider": "dropbox"}}})
    assert "accounts.acme.token: missing" in problem(
        {"accounts": {"acme": {k: v for k, v in SPECTRUM.items() if k != "token"}}}
    )
    assert "accounts: missing" in problem({})


def test_credentials_from_env_files_and_systemd(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_TOKEN", "from-env")
    assert parse_config(config_of(token={"env": "ACME_TOKEN"})).secret("acme", "token") == "from-env"
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    assert parse_config(config_of(token={"file": str(secret)})).secret("acme", "token") == "from-file"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert parse_config(config_of(token={"credential": "token"})).secret("acme", "token") == "from-file"


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("x")
    secret.chmod(0o644)
    config = parse_config(config_of(token={"file": str(secret)}))
    with pytest.raises(ConfigError, match="readable by group or others.*chmod 600"):
        config.secret("acme", "token")


def test_missing_credentials_say_where_they_were_looked_for(monkeypatch, tmp_path):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ConfigError, match="NOPE is not set"):
        parse_config(config_of(token={"env": "NOPE"})).secret("acme", "token")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        parse_config(config_of(token={"credential": "x"})).secret("acme", "token")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config(config_of(token={"file": str(tmp_path / "absent")})).secret("acme", "token")
    assert "token" in problem(config_of(token={"vault": "x"}))


def test_an_unreadable_or_absent_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[accounts\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_mount_options():
    o = parse_mount_options(
        ["ro,uid=1000,gid=100,umask=027,allow_other", "cache_size=1GiB,metadata_ttl=5m,timeout=10s,read_ahead=8MiB"]
    )
    assert (o.ro, o.uid, o.gid, o.umask, o.allow_other) == (True, 1000, 100, 0o027, True)
    assert (o.cache_size, o.metadata_ttl, o.timeout, o.read_ahead) == (1 << 30, 300, 10, 8 << 20)
    assert {"fsname=assetfs", "subtype=assetfs", "ro", "allow_other"} <= o.kernel_options()
    assert parse_mount_options(["_netdev,nofail,noauto,x-systemd.automount,user,defaults"]).ro is False
    for bad, says in (
        ("colour=blue", "colour"),
        ("uid", "needs a value"),
        ("timeout=0", "more than 0"),
        ("uid=abc", "uid"),
    ):
        with pytest.raises(ConfigError, match=says):
            parse_mount_options([bad])


def test_state_dir_defaults_to_xdg_state_home_and_can_be_set(monkeypatch):
    from assetfs.config import parse_config

    accounts = {"s": {"provider": "spectrum", "base_url": "https://x", "client": "c", "token": "t"}}
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert str(parse_config({"accounts": accounts}).state.path) == "/srv/state/assetfs"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/ann")
    assert str(parse_config({"accounts": accounts}).state.path) == "/home/ann/.local/state/assetfs"
    assert str(parse_config({"state": {"dir": "~/dam"}, "accounts": accounts}).state.path) == "/home/ann/dam"
    assert parse_mount_options(["state_dir=/var/lib/assetfs/x"]).state_dir == "/var/lib/assetfs/x"
    with pytest.raises(ConfigError, match=r"state.where: unknown key"):
        parse_config({"state": {"where": "/x"}, "accounts": accounts})


def test_poll_interval_is_a_duration_or_off():
    from assetfs.config import parse_config

    accounts = {"s": {"provider": "spectrum", "base_url": "https://x", "client": "c", "token": "t"}}
    assert parse_config({"accounts": accounts}).cache.poll_interval == 60.0
    assert parse_config({"cache": {"poll_interval": "off"}, "accounts": accounts}).cache.poll_interval is None
    assert parse_config({"cache": {"poll_interval": "2m"}, "accounts": accounts}).cache.poll_interval == 120.0
    assert parse_mount_options(["poll_interval=2s"]).poll_every(60.0) == 2.0
    assert parse_mount_options(["poll_interval=off"]).poll_every(60.0) is None
    assert parse_mount_options([]).poll_every(60.0) == 60.0
    with pytest.raises(ConfigError, match="poll_interval"):
        parse_mount_options(["poll_interval=often"])
