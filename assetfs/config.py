"""The TOML configuration: cache and state settings and one section per provider account.

Validation is pydantic's; its errors are rephrased into one message per problem that
names the key, so a typo is found without reading a traceback.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .logs import register_secret
from .metrics import checked_listen
from .query import parse as parse_query
from .units import parse_duration, parse_interval, parse_size


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "assetfs" / "config.toml"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "assetfs"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "assetfs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a credential is kept: an environment variable, a file, or a systemd credential."""

    env: str | None = None
    file: str | None = None
    credential: str | None = None


def _secret(value):
    if isinstance(value, (str, SecretRef)):
        return value
    if (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in ("env", "file", "credential")
        and isinstance(next(iter(value.values())), str)
    ):
        return SecretRef(**value)
    raise ValueError('must be a string, or one of { env = "NAME" }, { file = "PATH" }, { credential = "NAME" }')


Secret = Annotated[str | SecretRef, BeforeValidator(_secret)]


def resolve_secret(value: Secret, key: str) -> str:
    """A credential's value from where the config says it is."""
    if isinstance(value, str):
        return value
    if value.env is not None:
        if value.env not in os.environ:
            raise ConfigError(f"{key}: environment variable {value.env} is not set")
        return os.environ[value.env]
    if value.credential is not None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"{key}: credential {value.credential!r} asked for, but $CREDENTIALS_DIRECTORY is not set "
                "(use LoadCredential= in the systemd unit)"
            )
        return _read_secret_file(Path(directory) / value.credential, key, check_mode=False)
    if value.file is None:
        raise ConfigError(f"{key}: none of env, file or credential given")
    return _read_secret_file(Path(os.path.expanduser(value.file)), key, check_mode=True)


def _read_secret_file(path: Path, key: str, check_mode: bool) -> str:
    try:
        mode = path.stat().st_mode
        if check_mode and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{key}: {path} is readable by group or others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
            )
        return path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None


class CacheSettings(_Strict):
    dir: str = Field(default_factory=lambda: str(default_cache_dir()))
    max_size: int = parse_size("20GiB")
    metadata_ttl: float = 60.0
    # Seconds between two questions to the providers "did this directory change?"; None: off.
    poll_interval: float | None = 60.0
    # Seconds after a written file's last close before it is uploaded: a temporary file
    # renamed within them (sed -i, editors' safe saves) is uploaded once, under its final name.
    write_back: float = 5.0

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, v):
        return parse_size(v)

    @field_validator("metadata_ttl", "write_back", mode="before")
    @classmethod
    def _ttl(cls, v):
        return parse_duration(v)

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _poll(cls, v):
        return parse_interval(v)

    @property
    def path(self) -> Path:
        return Path(os.path.expanduser(self.dir))


class StateSettings(_Strict):
    """Where what cannot be fetched again lives: the upload journal and spool, providers' memory."""

    dir: str = Field(default_factory=lambda: str(default_state_dir()))

    @property
    def path(self) -> Path:
        return Path(os.path.expanduser(self.dir))


class ThumbnailSettings(_Strict):
    """`[thumbnails]`: the freedesktop thumbnail cache filled from the providers' renditions
    for the directories a file manager opens (README, Thumbnails)."""

    enable: bool = False
    dir: str | None = None  # the base holding normal/ and large/; default $XDG_CACHE_HOME/thumbnails

    @property
    def path(self) -> Path | None:
        return Path(os.path.expanduser(self.dir)) if self.dir else None


def parse_rate(text) -> tuple[int, float] | None:
    """'90/60s', '15/s', '600/5m' → (requests, per seconds); 'off' or 'none' → None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("off", "none", "")):
        return None
    if isinstance(text, (tuple, list)) and len(text) == 2:
        return int(text[0]), float(text[1])
    count, slash, per = str(text).partition("/")
    try:
        if not slash or not count.strip().isdigit() or int(count) < 1:
            raise ValueError
        seconds = parse_duration(per if per.strip()[:1].isdigit() else f"1{per.strip()}")
        if seconds <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f'not a rate: {text!r} (for example "90/60s", "15/s", or "off")') from None
    return int(count), seconds


def _view_name(name: str) -> str:
    if not name.strip() or "/" in name or "\0" in name or len(name.encode()) > 254:
        raise ValueError(f"{name!r} cannot be a directory name (@{name})")
    return name


def _view_query(expression: str) -> str:
    parse_query(expression)  # its error names what is wrong and where
    return expression


# A saved view: `@<name>/` in every container where its query applies.
ViewName = Annotated[str, AfterValidator(_view_name)]
ViewQuery = Annotated[str, AfterValidator(_view_query)]


class _Account(_Strict):
    base_url: str
    views: dict[ViewName, ViewQuery] = {}
    timeout: float | None = None
    # Requests per window to the provider's API (and token service); None: no limit.
    rate_limit: tuple[int, float] | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, v):
        return None if v is None else parse_duration(v)

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _rate(cls, v):
        return parse_rate(v)


class SpectrumAccount(_Account):
    provider: Literal["spectrum"]
    # Documented: fewer than 100 requests per 60 s per endpoint; one budget for all, kept under.
    rate_limit: tuple[int, float] | None = (90, 60.0)
    client: str
    # Organization IDs, or { "Main store" = "7000…" } to show them by name.
    organizations: list[str] | dict[str, str] = []
    token: Secret

    @field_validator("organizations", mode="before")
    @classmethod
    def _organizations(cls, v):
        if isinstance(v, dict):
            bad = [name for name, ident in v.items() if not isinstance(ident, (str, int)) or not str(ident).isdigit()]
            if bad:
                raise ValueError(f"organization IDs are numbers (as text): check {', '.join(map(repr, bad))}")
            return {str(name): str(ident) for name, ident in v.items()}
        return v


class IQmetrixAccount(_Account):
    provider: Literal["iqmetrix"]
    auth_url: str
    collections: dict[str, list[str]] = {}
    username: Secret
    password: Secret
    client_id: Secret
    client_secret: Secret


class AppleAccount(_Account):
    provider: Literal["apple"]
    rate_limit: tuple[int, float] | None = (15, 1.0)  # documented: 15 requests per second
    organizations: dict[str, list[str]] = {}
    client_id: Secret
    client_secret: Secret
    default_intent: Literal["PLACECARD_LOGO", "COVER_PHOTO", "GALLERY"] = "GALLERY"


class MudstackAccount(_Account):
    provider: Literal["mudstack"]
    account_id: Secret
    key: Secret
    secret: Secret
    workspaces: list[str] = []


class MetricsSettings(_Strict):
    """`[metrics]`: where the Prometheus endpoint listens ("HOST:PORT"); none: no endpoint."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v):
        return None if v is None else checked_listen(v)


class SharedSettings(_Strict):
    """`[shared]`: the Redis through which every mount of an account shares its rate budget
    and its listings (see README, Fleets)."""

    # redis://, rediss:// (TLS) or unix:// URL; a credential form when the URL carries a password
    redis: Secret
    password: Secret | None = None  # or the password apart from the URL, from any credential form

    @field_validator("redis")
    @classmethod
    def _url(cls, v):
        if isinstance(v, str) and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return v


Account = Annotated[SpectrumAccount | IQmetrixAccount | AppleAccount | MudstackAccount, Field(discriminator="provider")]


class Config(_Strict):
    cache: CacheSettings = Field(default_factory=CacheSettings)  # defaults read $XDG_* when parsed
    state: StateSettings = Field(default_factory=StateSettings)
    accounts: dict[str, Account]
    shared: SharedSettings | None = None
    thumbnails: ThumbnailSettings = Field(default_factory=ThumbnailSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    def secret(self, account: str, field: str) -> str:
        value = resolve_secret(getattr(self.accounts[account], field), f"accounts.{account}.{field}")
        register_secret(value)
        return value


def load_config(path: Path | str | None = None) -> Config:
    path = Path(path) if path else default_config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (see the README, section Configuration)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, str(path))


def parse_config(data: dict, where: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}:\n" + "\n".join(_explain(err) for err in e.errors())) from None


_PROVIDERS = {"spectrum", "iqmetrix", "apple", "mudstack"}
_BRANCHES = {"str", "SecretRef"}


def _explain(err: Mapping[str, Any]) -> str:
    # Drop pydantic's union-branch labels (the provider tag, "str", "FromEnv", …) from the key path.
    loc = list(err["loc"])
    if len(loc) > 2 and loc[0] == "accounts" and loc[2] in _PROVIDERS:
        del loc[2]
    loc = [str(p) for p in loc if p not in _BRANCHES]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"  {key}: unknown key"
    if kind == "missing":
        return f"  {key}: missing (required)"
    if kind == "union_tag_invalid":
        return f"  {key}.provider: must be one of spectrum, iqmetrix, apple, mudstack"
    if kind == "union_tag_not_found":
        return f"  {key}.provider: missing (one of spectrum, iqmetrix, apple, mudstack)"
    return f"  {key.removesuffix('.[key]')}: {err['msg'].removeprefix('Value error, ')}"
