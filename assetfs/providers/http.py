"""One httpx client per account: pooling, timeouts, retries with backoff, auth refresh,
and credentials sent only to the provider's own hosts."""

from __future__ import annotations

import logging
import random
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx
import trio
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay

from .. import __version__
from ..errors import AuthFailed, NotFound, ProviderError
from ..stats import Stats

log = logging.getLogger("assetfs.http")

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 5


class Retryable(ProviderError):
    """A failure worth another try (network trouble, 5xx, rate limiting)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Auth:
    """Credentials for one account. Subclasses fetch tokens; `invalidate` forces a new one."""

    async def headers(self, http: ProviderHTTP) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        pass


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def redact(url: str) -> str:
    """A URL fit for a log line: no query string (signatures, tokens) and no user info."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


class ProviderHTTP:
    def __init__(self, base_url: str, auth: Auth | None = None, *, timeout: float = 30.0, retries: int = 5,
                 trusted_urls: tuple[str, ...] = (), rate_limited_403=None, stats: Stats | None = None,
                 max_connections: int = 32):
        self.base_url = base_url.rstrip("/") + "/"
        self.auth = auth or Auth()
        self.timeout = timeout
        self.retries = retries
        self.trusted = {origin(self.base_url), *(origin(u) for u in trusted_urls)}
        self.rate_limited_403 = rate_limited_403 or (lambda response: False)
        self.stats = stats or Stats()
        per_try = max(1.0, timeout / 2)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(per_try, connect=min(10.0, per_try)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            headers={"User-Agent": f"assetfs/{__version__}"},
        )

    def url(self, path: str) -> str:
        return path if "://" in path else urljoin(self.base_url, path.lstrip("/"))

    def is_trusted(self, url: str) -> bool:
        """Credentials go only to the hosts of this account's configured URLs."""
        return origin(url) in self.trusted

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- requests with retries -------------------------------------------------------------

    async def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), retry: bool = True,
                      follow: bool = True, **kwargs) -> httpx.Response:
        """Send a request with auth, retrying what is worth retrying; raise the mapped error
        for any status not in `expect`."""
        url = self.url(path)
        attempts = self.retries if retry else 1
        retrying = AsyncRetrying(
            sleep=trio.sleep,
            stop=stop_after_attempt(attempts) | stop_after_delay(self.timeout),
            wait=_wait,
            retry=retry_if_exception_type(Retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._send_authorized(method, url, follow=follow, **kwargs)
                self._raise_for(method, url, response, expect)
                return response
        raise AssertionError("unreachable")

    async def json(self, method: str, path: str, **kwargs):
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as e:
            raise ProviderError(f"{method} {redact(response.url)}: the provider sent malformed JSON ({e})") from None

    async def _send_authorized(self, method: str, url: str, *, follow: bool, **kwargs) -> httpx.Response:
        response = await self._send(method, url, follow=follow, **kwargs)
        if response.status_code == 401 and self.is_trusted(url):
            log.info("%s %s: 401, fetching a new token and trying again", method, redact(url))
            self.auth.invalidate()
            response = await self._send(method, url, follow=follow, **kwargs)
        return response

    async def _send(self, method: str, url: str, *, follow: bool, headers: dict | None = None, **kwargs) -> httpx.Response:
        """One request, following redirects by hand so that credentials never travel to
        another host and a POST redirected with 303 becomes a GET."""
        for _ in range(MAX_REDIRECTS + 1):
            all_headers = dict(headers or {})
            if self.is_trusted(url):
                all_headers.update(await self.auth.headers(self))
            started = time.monotonic()
            try:
                response = await self.client.request(method, url, headers=all_headers, **kwargs)
            except httpx.TransportError as e:
                self.stats.add("errors")
                raise Retryable(f"{method} {redact(url)}: {type(e).__name__}: {e or 'connection failed'}") from None
            self.stats.add("requests")
            log.debug("%s %s → %s in %.0f ms", method, redact(url), response.status_code, 1000 * (time.monotonic() - started))
            if not (follow and response.is_redirect and "location" in response.headers):
                return response
            url = urljoin(url, response.headers["location"])
            if method != "HEAD" and (response.status_code == 303 or (response.status_code in (301, 302) and method == "POST")):
                method, kwargs = "GET", {}
        raise ProviderError(f"{redact(url)}: too many redirects")

    def _raise_for(self, method: str, url: str, response: httpx.Response, expect: tuple[int, ...]) -> None:
        status = response.status_code
        if status in expect:
            return
        self.stats.add("errors")
        where = f"{method} {redact(url)}"
        body = _short(response)
        if status in RETRY_STATUSES or (status == 403 and self.rate_limited_403(response)):
            raise Retryable(f"{where}: HTTP {status} {body}", retry_after=_retry_after(response))
        if status == 404:
            raise NotFound(f"{where}: not found")
        if status in (401, 403):
            raise AuthFailed(f"{where}: HTTP {status}: the provider refused the credentials {body}")
        raise ProviderError(f"{where}: HTTP {status} {body}")

    # -- content -----------------------------------------------------------------------------

    async def head(self, url: str) -> tuple[int, str]:
        """(size, final URL) of a content URL, following redirects."""
        response = await self.request("HEAD", url)
        length = response.headers.get("content-length")
        if length is None or not length.isdigit():
            raise ProviderError(f"HEAD {redact(url)}: no Content-Length")
        return int(length), str(response.url)


def _wait(retry_state) -> float:
    """Exponential backoff with jitter, or the provider's Retry-After when it sent one."""
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, Retryable) and exc.retry_after is not None:
        return min(exc.retry_after, 60.0)
    return min(8.0, 0.25 * 2 ** (retry_state.attempt_number - 1)) * (0.5 + random.random() / 2)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after") or response.headers.get("x-ratelimit-resetseconds")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _short(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # a streamed or undecodable body
        return ""
    text = " ".join(text.split())
    return f"({text[:200]})" if text else ""
