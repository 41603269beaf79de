"""One httpx client per account: pooling, timeouts, retries with backoff, auth refresh,
credentials sent only to the provider's own hosts, a request budget that keeps bursts
under the provider's rate limit, and hosts that stopped answering failed fast for a while."""

from __future__ import annotations

import errno
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
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
MAX_JSON_BYTES = 256 << 20  # an API answer larger than this is refused, not parsed


class Retryable(ProviderError):
    """A failure worth another try (network trouble, 5xx, rate limiting)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Unreachable(Retryable):
    """No answer at all from a host (refused, timed out, name unknown), as opposed to an
    answer that went wrong (a reset mid-body, a 5xx)."""

    def __init__(self, message: str, url: str, why: str):
        super().__init__(message)
        self.url = url
        self.why = why


PROBE_EVERY = 2.0    # seconds between two background probes of a host held down
PROBE_TIMEOUT = 2.0  # seconds a probe waits for any answer


@dataclass
class Outage:
    """A host that did not answer: requests to it fail fast until `until`."""

    until: float
    why: str


class Unavailable(ProviderError):
    """A host of the provider failed to answer moments ago: answered at once instead of
    making every syscall wait out the timeout again (see `ProviderHTTP.check_reachable`)."""


def unreachable_error(e: BaseException) -> bool:
    """Whether a socket-level error means the host did not answer at all."""
    if isinstance(e, (TimeoutError, ConnectionRefusedError, socket.gaierror)):
        return True
    return isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)


NO_ANSWER = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout)


class RequestBudget:
    """At most `limit` requests in any `window` seconds (a sliding log of send times), so
    that a burst (a file manager reading every file of a big directory) waits its turn
    here instead of being refused by the provider's rate limit. Waiters go in order."""

    def __init__(self, limit: int, window: float):
        self.limit = max(1, limit)
        self.window = window
        self._sent: deque[float] = deque()
        self._lock = trio.Lock()
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """No request before `seconds` from now: the provider said so (429 + Retry-After)."""
        self._paused_until = max(self._paused_until, trio.current_time() + seconds)

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                await trio.sleep_until(self._paused_until)
                now = trio.current_time()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                await trio.sleep_until(self._sent[0] + self.window)


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
                 max_connections: int = 32, rate_limit: tuple[int, float] | None = None):
        self.base_url = base_url.rstrip("/") + "/"
        self.auth = auth or Auth()
        self.timeout = timeout
        self.retries = retries
        self.trusted = {origin(self.base_url), *(origin(u) for u in trusted_urls)}
        # The provider's own API (and token service): what its rate limit counts.
        self._api_prefixes = (self.base_url, *(u.rstrip("/") + "/" for u in trusted_urls))
        self.budget: RequestBudget | None = None
        self.set_rate_limit(rate_limit)
        self.rate_limited_403 = rate_limited_403 or (lambda response: False)
        self.stats = stats or Stats()
        per_try = max(1.0, timeout / 2)
        # How long after its last failure a host that did not answer is failed fast. The
        # request that found it down goes on trying until its own deadline, up to a
        # `timeout` later: the next syscall (the rest of a path walk) must not wait again.
        # Meanwhile a background task probes it every PROBE_EVERY seconds, so that it is
        # trusted again as soon as it answers, and no syscall waits on it in between.
        self.hold = timeout
        self._down: dict[tuple[str, str], Outage] = {}
        self._probing: set[tuple[str, str]] = set()
        self.on_recovery: Callable[[], None] | None = None  # called when a host answers again after failing
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

    # -- pacing and reachability ---------------------------------------------------------------

    def set_rate_limit(self, rate_limit: tuple[int, float] | None) -> None:
        """(requests, per seconds) for the account's API routes, or None for no limit."""
        self.budget = RequestBudget(*rate_limit) if rate_limit else None

    def is_api(self, url: str) -> bool:
        return url.startswith(self._api_prefixes)

    async def pace(self, url: str) -> None:
        """Wait for room in the request budget before a request to the provider's API."""
        if self.budget is not None and self.is_api(url):
            await self.budget.acquire()

    def check_reachable(self, url: str) -> None:
        """Raise Unavailable if the URL's host failed to answer within the last `hold`
        seconds. The request that found it down keeps retrying; new ones fail at once, so
        an outage costs one wait, not one per syscall (a path walk, a file manager's burst)."""
        down = self._down.get(origin(url))
        if down is None:
            return
        left = down.until - time.monotonic()
        if left <= 0:
            return
        self.stats.add("errors")
        raise Unavailable(f"{redact(url)}: the provider did not answer moments ago ({down.why}); "
                          f"it is probed every {PROBE_EVERY:g}s and used again once it answers")

    def note_unreachable(self, url: str, why: str) -> None:
        key = origin(url)
        self._down[key] = Outage(time.monotonic() + self.hold, why)
        if key not in self._probing:
            self._probing.add(key)
            trio.lowlevel.spawn_system_task(self._probe, key, url, name=f"probe {redact(url)}")

    async def _probe(self, key: tuple[str, str], url: str) -> None:
        """While a host is held down, ask it (a HEAD without credentials) every PROBE_EVERY
        seconds: any HTTP answer ends the outage; no answer keeps it held down."""
        try:
            while key in self._down:
                await trio.sleep(PROBE_EVERY)
                if key not in self._down:
                    return
                try:
                    with trio.fail_after(PROBE_TIMEOUT):
                        await self.client.request("HEAD", url)
                except (httpx.TransportError, trio.TooSlowError) as e:
                    outage = self._down.get(key)
                    if outage is not None:
                        outage.until = max(outage.until, time.monotonic() + PROBE_EVERY + PROBE_TIMEOUT)
                        outage.why = type(e).__name__
                    continue
                self.note_reachable(url)
        except Exception as e:  # a closed client at unmount, or anything unforeseen: stop probing
            log.debug("probing %s stopped: %s", redact(url), e)
        finally:
            self._probing.discard(key)

    def note_reachable(self, url: str) -> None:
        if self._down.pop(origin(url), None) is not None:
            log.info("%s answers again", redact(url))
            if self.on_recovery is not None:
                self.on_recovery()

    # -- requests with retries -------------------------------------------------------------

    async def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), retry: bool = True,
                      follow: bool = True, **kwargs) -> httpx.Response:
        """Send a request with auth, retrying what is worth retrying; raise the mapped error
        for any status not in `expect`."""
        url = self.url(path)
        self.check_reachable(url)
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
        where = f"{method} {redact(response.url)}"
        if len(response.content) > MAX_JSON_BYTES:
            raise ProviderError(f"{where}: the answer is {len(response.content)} bytes, more than the "
                                f"{MAX_JSON_BYTES} a listing may be")
        try:
            return response.json()
        except ValueError as e:
            raise ProviderError(f"{where}: the provider sent malformed JSON ({e})") from None
        except RecursionError:
            raise ProviderError(f"{where}: the provider sent JSON nested too deeply to read") from None

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
            await self.pace(url)
            started = time.monotonic()
            try:
                response = await self.client.request(method, url, headers=all_headers, **kwargs)
            except httpx.TransportError as e:
                self.stats.add("errors")
                message = f"{method} {redact(url)}: {type(e).__name__}: {e or 'connection failed'}"
                if isinstance(e, NO_ANSWER):
                    self.note_unreachable(url, type(e).__name__)
                    raise Unreachable(message, url, type(e).__name__) from None
                raise Retryable(message) from None
            self.note_reachable(url)
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
            wait = retry_after(response)
            if status in (403, 429) and wait is not None and self.budget is not None and self.is_api(url):
                self.budget.pause(min(wait, 60.0))  # the whole budget waits, not only this request
            raise Retryable(f"{where}: HTTP {status} {body}", retry_after=wait)
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


def retry_after(response) -> float | None:
    """Seconds to wait from a Retry-After (seconds or a date) or iQmetrix's
    X-RateLimit-ResetSeconds header; for httpx and http.client responses alike."""
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
