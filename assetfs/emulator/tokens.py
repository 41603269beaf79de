"""Bearer tokens issued by the emulator's auth routes, with a settable lifetime."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field


@dataclass
class Grant:
    """One issued access token (and, for OAuth2 password grants, its refresh token)."""

    provider: str
    subject: str
    expires_at: float
    refresh_token: str | None = None


@dataclass
class TokenIssuer:
    """Issues and checks opaque tokens.

    `ttl` overrides every provider's documented lifetime when set, so that tests can
    watch tokens expire and be refreshed in seconds instead of hours.
    """

    ttl: float | None = None
    issued: list[str] = field(default_factory=list)  # every token handed out (for leak checks in tests)
    _access: dict[str, Grant] = field(default_factory=dict)
    _refresh: dict[str, Grant] = field(default_factory=dict)

    def lifetime(self, documented: float) -> int:
        return int(self.ttl if self.ttl is not None else documented)

    def issue(
        self, provider: str, subject: str, documented_ttl: float, with_refresh: bool = False
    ) -> tuple[str, Grant]:
        token = f"{provider[:2]}-{secrets.token_urlsafe(24)}"
        grant = Grant(provider, subject, time.time() + self.lifetime(documented_ttl))
        if with_refresh:
            grant.refresh_token = f"rt-{secrets.token_urlsafe(24)}"
            self._refresh[grant.refresh_token] = grant
        self._access[token] = grant
        self.issued.append(token)
        if grant.refresh_token:
            self.issued.append(grant.refresh_token)
        return token, grant

    def check(self, provider: str, token: str | None) -> Grant | None:
        """The grant behind a token if it is current and was issued for this provider."""
        if not token:
            return None
        grant = self._access.get(token)
        if grant is None or grant.provider != provider:
            return None
        if grant.expires_at <= time.time():
            del self._access[token]
            return None
        return grant

    def redeem_refresh(self, provider: str, refresh_token: str) -> Grant | None:
        """Spend a refresh token; the access tokens of its grant are revoked (as iQmetrix documents)."""
        grant = self._refresh.pop(refresh_token, None)
        if grant is None or grant.provider != provider:
            return None
        for token in [t for t, g in self._access.items() if g is grant]:
            del self._access[token]
        return grant

    def revoke_all(self) -> None:
        """Expire every access token at once (a test switch for refresh-after-401)."""
        self._access.clear()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
