"""Bearer tokens from a provider's token service, shared by the providers that need one.

`TokenAuth` keeps the account's token and renews it shortly before it expires and after a
401; a subclass says only how a token is fetched (`fetch`) and which headers go with it.
"""

from __future__ import annotations

import contextvars
import time

import httpx
import trio

from ..errors import AuthFailed, ProviderError
from ..logs import register_secret
from .http import Auth, ProviderHTTP, Unavailable

TOKEN_MARGIN = 60.0  # seconds before expiry when a token is renewed (at most a tenth of its life)

# The token the current task last sent, so that a 401 invalidates only that token: after one
# request has renewed it, the other requests that failed with the old one must not renew it
# again (an iQmetrix refresh revokes the token it replaces, which would fail them anew).
_sent_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("assetfs_sent_token", default=None)


class TokenAuth(Auth):
    """One bearer token for the account, fetched once for all concurrent requests."""

    service = "the provider"  # names the account in messages: "<service> account <name>"

    def __init__(self, account: str):
        self.account = account
        self._lock = trio.Lock()
        self._token: str | None = None
        self._renew_at = 0.0  # time.monotonic() after which the token is renewed

    @property
    def who(self) -> str:
        return f"{self.service} account {self.account}"

    async def fetch(self, http: ProviderHTTP) -> tuple[str, float]:
        """A new token and its lifetime in seconds; raise AuthFailed for refused credentials."""
        raise NotImplementedError

    def extra_headers(self) -> dict[str, str]:
        """Headers sent with the token on every request to the provider."""
        return {}

    def _current(self) -> str | None:
        if self._token is not None and time.monotonic() < self._renew_at:
            return self._token
        return None

    async def headers(self, http: ProviderHTTP) -> dict[str, str]:
        token = self._current()
        if token is None:
            async with self._lock:
                token = self._current() or await self._renew(http)
        _sent_token.set(token)
        return {"Authorization": f"Bearer {token}", **self.extra_headers()}

    async def _renew(self, http: ProviderHTTP) -> str:
        token, lifetime = await self.fetch(http)
        register_secret(token)  # never in a log line, even at debug level
        self._token = token
        self._renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN, lifetime / 10)
        return token

    def invalidate(self) -> None:
        sent = _sent_token.get()
        if sent is None or sent == self._token:
            self._token = None

    def _expect(
        self,
        response: httpx.Response,
        refused: str,
        answered: str,
        ok: tuple[int, ...] = (200,),
        refusals: tuple[int, ...] = (400, 401, 403),
    ) -> None:
        """Raise AuthFailed ("the token service refused <refused>") for a status in `refusals`,
        ProviderError ("… answered <answered>") for any other not in `ok`. Neither names a secret."""
        if response.status_code in refusals:
            raise AuthFailed(f"{self.who}: the token service refused {refused}")
        if response.status_code not in ok:
            raise ProviderError(f"{self.who}: the token service answered {answered}")

    def _oauth2_answer(self, response: httpx.Response) -> tuple[str, float, dict]:
        """(access token, lifetime, whole body) of an OAuth2 token answer (RFC 6749 §5.1)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(f"{self.who}: the token service's answer has no access_token")
        try:
            lifetime = max(0.0, float(body.get("expires_in")))
        except (TypeError, ValueError):
            lifetime = 3600.0  # not given: an hour (as Apple documents); a 401 renews it sooner if need be
        return token, lifetime, body

    async def _post(
        self, http: ProviderHTTP, url: str, *, json: dict | None = None, data: dict | None = None
    ) -> httpx.Response:
        """POST to the token service under the account's request policy (reachability,
        pacing, retries, Retry-After), without credentials: this object is where they come
        from. The answer is returned whatever its status, for `_expect` to judge. A redirect
        is not followed: a 307 would send the password or secret on to wherever it points."""
        try:
            return await http.request("POST", url, expect=None, auth=False, follow=False, json=json, data=data)
        except Unavailable:
            raise
        except ProviderError as e:
            raise ProviderError(f"{self.who}: the token service failed: {e}") from None
