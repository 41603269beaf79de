"""A fleet: mounts of one provider account on many hosts that share, through Redis
(`[shared]` in the config), the account's request budget, its listings and the sizes its
mounts learn by HEAD."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from ..config import Config, resolve_secret
from ..errors import ConfigError
from ..logs import register_secret
from ..providers.base import Provider
from .budget import SharedBudget
from .codec import listing_key
from .link import RedisLink
from .listings import SharedListings
from .sizes import SharedSizes

# What tells one account from another (hashed into the keys; never a secret) ...
IDENTITY = {
    "spectrum": ("client",),
    "iqmetrix": ("client_id", "username"),
    "apple": ("client_id",),
    "mudstack": ("account_id",),
}
# ... and what only its holders know (the key that seals its listings).
SECRETS = {
    "spectrum": ("token",),
    "iqmetrix": ("password", "client_secret"),
    "apple": ("client_secret",),
    "mudstack": ("key", "secret"),
}


def namespace(provider: str, base_url: str, identity: list[str]) -> str:
    """The Redis key prefix of one account: `assetfs:{<hash>}:` (the braces keep an
    account's keys in one Redis Cluster slot, as its Lua scripts need)."""
    digest = hashlib.sha256("\0".join([provider, base_url.rstrip("/"), *identity]).encode()).hexdigest()[:24]
    return f"assetfs:{{{digest}}}:"


def connect(config: Config) -> RedisLink:
    """The link to the fleet's Redis; the URL's password is kept out of every log line."""
    shared = config.shared
    if shared is None:
        raise ConfigError("[shared]: a fleet needs the section, with redis = the Redis URL")
    url = resolve_secret(shared.redis, "shared.redis")
    if not url.startswith(("redis://", "rediss://", "unix://")):  # from { env } or { file }: checked here
        raise ConfigError("shared.redis: must be a redis://, rediss:// or unix:// URL")
    password = resolve_secret(shared.password, "shared.password") if shared.password else None
    for secret in (password, urlsplit(url).password):
        if secret:
            register_secret(secret)
    return RedisLink(url, password)


def join(provider: Provider, account: str, config: Config, link: RedisLink) -> None:
    """Make the provider share its budget, its listings and the sizes it learns with every
    mount of its account."""
    settings = config.accounts[account]
    ns = namespace(
        settings.provider, settings.base_url, [_value(config, account, f) for f in IDENTITY[settings.provider]]
    )
    if settings.rate_limit is not None:
        provider.http.budget = SharedBudget(link, ns, *settings.rate_limit, horizon=provider.http.timeout)
    key = listing_key([_value(config, account, f) for f in SECRETS[settings.provider]], ns)
    SharedListings(link, ns, key, config.cache.metadata_ttl, provider.http.stats).install(provider)
    SharedSizes(link, ns, key, provider.http.stats).install(provider)


def _value(config: Config, account: str, field: str) -> str:
    value = getattr(config.accounts[account], field)
    return value if isinstance(value, str) else config.secret(account, field)
