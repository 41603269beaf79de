"""One client per account, and the one policy every request of the account goes by (API
calls, the token service, signed uploads through `request`; the reader's ranged GETs through
`outside`): pooling, timeouts, retries with backoff or the provider's Retry-After, auth
refresh, credentials sent only to the provider's own hosts, a request budget that keeps
bursts under the provider's rate limit, and hosts that stopped answering failed fast until
they answer again (recovery is announced to subscribers)."""

from __future__ import annotations

import errno
import json
import logging
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
import trio
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_before_delay

from .. import __version__
from ..errors import AssetfsError, AuthFailed, Gone, ProviderError
from ..stats import Stats

log = logging.getLogger("assetfs.http")

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_REDIRECTS = 5
MAX_JSON_BYTES = 256 << 20  # an API answer larger than this is refused, not parsed


class Retryable(ProviderError):
    """A failure worth another try (network trouble, 5xx, rate limiting). `not_taken`: the
    provider did not act on the request (refused it for rate, or it never arrived), so even
    a request that must not happen twice may be sent again."""

    def __init__(self, message: str, retry_after: float | None = None, not_taken: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.not_taken = not_taken


class Unreachable(Retryable):
    """No answer at all from a host (refused, timed out, name unknown), as opposed to an
    answer that went wrong (a reset mid-body, a 5xx)."""

    def __init__(self, message: str, url: str, why: str, not_taken: bool = False):
        super().__init__(message, not_taken=not_taken)
        self.url = url
        self.why = why


class CredentialsRejected(ProviderError):
    """A host of the account answered 401 to the credentials sent: renew them and try again."""


NOT_TAKEN = "not taken"  # request(retry=NOT_TAKEN): retry only what the provider did not act on


@dataclass
class Grant:
    """What a request sent outside this client gets from the policy (see `outside`)."""

    credentials: dict[str, str]  # for the account's own hosts only
    user_agent: str
    pace: Callable[[str], None]  # called in the worker thread before each redirected request

    def header_lines(self, trusted: bool) -> list[str]:
        """The headers to send a host ("Name: value" lines, as libcurl takes them): the
        credentials only to a host of the account (`trusted`)."""
        sent = {"User-Agent": self.user_agent, **(self.credentials if trusted else {})}
        return [f"{name}: {value}" for name, value in sent.items()]


PROBE_EVERY = 2.0  # seconds between two background probes of a host held down
PROBE_TIMEOUT = 2.0  # seconds a probe waits for any answer
ASK_AGAIN_AFTER = 0.3  # a syscall meeting a host held down asks it again when no probe ended this recently…
ASK_TIMEOUT = 0.5  # …and waits this long for any answer (one question shared by all syscalls)


@dataclass
class Outage:
    """A host that did not answer: requests to it fail fast until `until`."""

    until: float
    why: str
    asked: float = 0.0  # monotonic time the last probe gave up
    asking: trio.Event | None = None  # set when the probe a syscall started is over


class Unavailable(ProviderError):
    """A host of the provider failed to answer moments ago: answered at once instead of
    making every syscall wait out the timeout again (see `ProviderHTTP.ensure_reachable`)."""


def unreachable_error(e: BaseException) -> bool:
    """Whether a socket-level error means the host did not answer at all."""
    if isinstance(e, (TimeoutError, ConnectionRefusedError, socket.gaierror)):
        return True
    return isinstance(e, OSError) and e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)


NO_ANSWER = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout)


# Requests made inside `background()` (thumbnails filled ahead) go at the lowest priority.
_background: ContextVar[bool] = ContextVar("assetfs_background", default=False)


@contextmanager
def background() -> Iterator[None]:
    """The requests made in here wait until no other request of the account waits for the
    budget, and leave a tenth of it free for the next one a user makes."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


class Budget(Protocol):
    """What a request to the API waits on: the mount's own RequestBudget, or the fleet's SharedBudget."""

    limit: int
    window: float

    def pause(self, seconds: float) -> None: ...

    async def acquire(self) -> None: ...


class RequestBudget:
    """At most `limit` requests in any `window` seconds (a sliding log of send times), so
    that a burst (a file manager reading every file of a big directory) waits its turn
    here instead of being refused by the provider's rate limit. Waiters go in order, those
    made in `background()` after all the others."""

    def __init__(self, limit: int, window: float):
        self.limit = max(1, limit)
        self.window = window
        self._sent: deque[float] = deque()
        self._lock = trio.Lock()
        self._paused_until = 0.0
        self._waiting = 0  # requests not in the background waiting for a slot

    async def _behind_the_others(self) -> None:
        spare = max(1, self.limit // 10)
        while True:
            now = trio.current_time()
            while self._sent and self._sent[0] <= now - self.window:
                self._sent.popleft()
            if self._waiting or self._lock.locked() or now < self._paused_until:
                await trio.sleep(0.05)
            elif len(self._sent) + spare <= self.limit:
                return
            else:
                await trio.sleep_until(self._sent[len(self._sent) + spare - self.limit - 1] + self.window)

    def pause(self, seconds: float) -> None:
        """No request before `seconds` from now: the provider said so (429 + Retry-After)."""
        self._paused_until = max(self._paused_until, trio.current_time() + seconds)

    async def acquire(self) -> None:
        low = _background.get()
        if low:
            await self._behind_the_others()
        self._waiting += not low
        try:
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
        finally:
            self._waiting -= not low


class Auth:
    """Credentials for one account. Subclasses fetch tokens; `invalidate` forces a new one."""

    async def headers(self, http: ProviderHTTP) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        pass


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def redact(url: str | httpx.URL) -> str:
    """A URL fit for a log line: no query string (signatures, tokens) and no user info."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


class ProviderHTTP:
    def __init__(
        self,
        base_url: str,
        auth: Auth | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        trusted_urls: tuple[str, ...] = (),
        rate_limited_403=None,
        stats: Stats | None = None,
        max_connections: int = 32,
        rate_limit: tuple[int, float] | None = None,
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.auth = auth or Auth()
        self.timeout = timeout
        self.retries = retries
        self.trusted = {origin(self.base_url), *(origin(u) for u in trusted_urls)}
        # The provider's own API (and token service): what its rate limit counts.
        self._api_prefixes = (self.base_url, *(u.rstrip("/") + "/" for u in trusted_urls))
        self.budget: Budget | None = None
        self.set_rate_limit(rate_limit)
        self.rate_limited_403 = rate_limited_403 or (lambda response: False)
        self.stats = stats or Stats()
        self.labels = ("", "")  # (account, provider) of this client's requests in the metrics; set by the mount
        per_try = max(1.0, timeout / 2)
        # How long after its last failure a host that did not answer is failed fast. The
        # request that found it down goes on trying until its own deadline, up to a
        # `timeout` later: the next syscall (the rest of a path walk) must not wait again.
        # Meanwhile a background task probes it every PROBE_EVERY seconds, so that it is
        # trusted again as soon as it answers, and no syscall waits on it in between.
        self.hold = timeout
        self._down: dict[tuple[str, str], Outage] = {}
        self._probing: set[tuple[str, str]] = set()
        self._on_recovery: list[Callable[[], None]] = []
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

    async def ensure_reachable(self, url: str) -> None:
        """Raise Unavailable if the URL's host failed to answer within the last `hold`
        seconds and still does not. The request that found it down keeps retrying; new ones
        fail fast, so an outage costs one wait, not one per syscall (a path walk, a file
        manager's burst). "Still": a syscall that comes when no probe ended in the last
        ASK_AGAIN_AFTER seconds asks the host (a HEAD, at most ASK_TIMEOUT), once for all
        syscalls waiting meanwhile, so the first call after the provider is back works."""
        key = origin(url)
        down = self._down.get(key)
        if down is None or down.until <= time.monotonic():
            return
        if down.asking is not None:
            await down.asking.wait()
        elif time.monotonic() - down.asked >= ASK_AGAIN_AFTER:
            down.asking = trio.Event()
            try:
                await self._ask(key, url, ASK_TIMEOUT)
            finally:
                down.asking.set()
                down.asking = None
        if key not in self._down:
            return
        self.stats.add("errors")
        raise Unavailable(
            f"{redact(url)}: the provider did not answer moments ago ({down.why}) nor just now; "
            f"it is asked again at the next call and every {PROBE_EVERY:g}s"
        )

    def held_down(self, url: str) -> bool:
        """Whether the URL's host failed to answer within the last `hold` seconds."""
        down = self._down.get(origin(url))
        return down is not None and down.until > time.monotonic()

    def note_unreachable(self, url: str, why: str) -> None:
        key = origin(url)
        self._down[key] = Outage(time.monotonic() + self.hold, why)
        if key not in self._probing:
            self._probing.add(key)
            trio.lowlevel.spawn_system_task(self._probe, key, url, name=f"probe {redact(url)}")

    async def _probe(self, key: tuple[str, str], url: str) -> None:
        """While a host is held down, ask it every PROBE_EVERY seconds (in the background: no
        syscall waits for these)."""
        try:
            while key in self._down:
                await trio.sleep(PROBE_EVERY)
                if key in self._down:
                    await self._ask(key, url, PROBE_TIMEOUT)
        except Exception as e:  # a closed client at unmount, or anything unforeseen: stop probing
            log.debug("probing %s stopped: %s", redact(url), e)
        finally:
            self._probing.discard(key)

    async def _ask(self, key: tuple[str, str], url: str, timeout: float) -> None:
        """One probe: a HEAD without credentials. Any HTTP answer ends the outage; no answer
        keeps the host held down a little longer."""
        try:
            with trio.fail_after(timeout):
                await self.client.request("HEAD", url)
        except (httpx.TransportError, trio.TooSlowError) as e:
            outage = self._down.get(key)
            if outage is not None:
                outage.until = max(outage.until, time.monotonic() + PROBE_EVERY + PROBE_TIMEOUT)
                outage.why = type(e).__name__
                outage.asked = time.monotonic()
            return
        self.note_reachable(url)

    def subscribe_recovery(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a host of this account answers again after an outage
        (e.g. to retry the uploads that were waiting for it)."""
        self._on_recovery.append(callback)

    def note_reachable(self, url: str) -> None:
        if self._down.pop(origin(url), None) is not None:
            log.info("%s answers again", redact(url))
            for callback in self._on_recovery:
                callback()

    # -- requests: one policy for every request of the account ----------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] | None = (200,),
        retry: bool | str = True,
        follow: bool = True,
        auth: bool = True,
        body: Callable[[], dict] | None = None,
        **kwargs,
    ) -> httpx.Response:
        """Send a request under the account's policy: the host must be reachable, the request
        waits its turn in the budget, carries the credentials (only to the account's own
        hosts, and only with `auth`), a 401 renews them once, and what is worth retrying is
        retried with backoff or after the provider's Retry-After, within the timeout.

        `retry`: True (network trouble, 5xx, 429, rate-limit 403), False (one try), or
        NOT_TAKEN (only what the provider refused before acting on it: a 429, a rate-limit
        403, a connection never made), for requests that must not happen twice (uploads).
        `expect`: the statuses that are success; any other raises its mapped error. None:
        return any answer that is not retried (the caller reads the status itself).
        `body`: keyword arguments made anew for each try (a stream cannot be sent twice)."""
        url = self.url(path)
        await self.ensure_reachable(url)
        retrying = AsyncRetrying(
            sleep=trio.sleep,
            stop=stop_after_attempt(self.retries if retry else 1) | stop_before_delay(self.timeout),
            wait=_wait,
            retry=retry_if_exception(lambda e: isinstance(e, Retryable) and (retry is True or e.not_taken)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._send_authorized(method, url, follow=follow, auth=auth, body=body, **kwargs)
                self._raise_for(method, url, response, expect)
                return response
        raise AssertionError("unreachable")

    async def json(self, method: str, path: str, **kwargs):
        response = await self.request(method, path, **kwargs)
        where = f"{method} {redact(response.url)}"
        if len(response.content) > MAX_JSON_BYTES:
            raise ProviderError(
                f"{where}: the answer is {len(response.content)} bytes, more than the {MAX_JSON_BYTES} a listing may be"
            )
        try:
            return _parse_json(response.content)
        except ValueError as e:
            raise ProviderError(f"{where}: the provider sent malformed JSON ({e})") from None
        except RecursionError:
            raise ProviderError(f"{where}: the provider sent JSON nested too deeply to read") from None

    async def _send_authorized(
        self, method: str, url: str, *, follow: bool, auth: bool, body: Callable[[], dict] | None, **kwargs
    ) -> httpx.Response:
        response = await self._send(method, url, follow=follow, auth=auth, **kwargs, **(body() if body else {}))
        if auth and response.status_code == 401 and self.is_trusted(url):
            log.info("%s %s: 401, fetching a new token and trying again", method, redact(url))
            self.auth.invalidate()
            response = await self._send(method, url, follow=follow, auth=auth, **kwargs, **(body() if body else {}))
        return response

    async def _send(
        self, method: str, url: str, *, follow: bool, auth: bool, headers: dict | None = None, **kwargs
    ) -> httpx.Response:
        """One request, following redirects by hand so that credentials never travel to
        another host and a POST redirected with 303 becomes a GET."""
        for _ in range(MAX_REDIRECTS + 1):
            all_headers = dict(headers or {})
            if auth and self.is_trusted(url):
                all_headers.update(await self.auth.headers(self))
            await self.pace(url)
            started = time.monotonic()
            try:
                response = await self.client.request(method, url, headers=all_headers, **kwargs)
            except httpx.TransportError as e:
                self.stats.add("errors")
                self.stats.request(self.labels, method, "error", time.monotonic() - started)
                message = f"{method} {redact(url)}: {type(e).__name__}: {e or 'connection failed'}"
                never_sent = isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))
                if isinstance(e, NO_ANSWER):
                    self.note_unreachable(url, type(e).__name__)
                    raise Unreachable(message, url, type(e).__name__, not_taken=never_sent) from None
                raise Retryable(message, not_taken=never_sent) from None
            self.note_reachable(url)
            self.stats.add("requests")
            self.stats.request(self.labels, method, str(response.status_code), time.monotonic() - started)
            # The body is read. httpx's response and its stream refer to each other, so only
            # the garbage collector would free it: listing pages of megabytes would linger.
            response.stream = httpx.ByteStream(b"")
            log.debug(
                "%s %s → %s in %.0f ms", method, redact(url), response.status_code, 1000 * (time.monotonic() - started)
            )
            if not (follow and response.is_redirect and "location" in response.headers):
                return response
            target = urljoin(url, response.headers["location"])
            if method not in ("GET", "HEAD") and response.status_code in (307, 308) and not self.is_trusted(target):
                raise ProviderError(
                    f"{method} {redact(url)}: redirected to another host ({redact(target)}); its body is not sent there"
                )
            url = target
            if method != "HEAD" and (
                response.status_code == 303 or (response.status_code in (301, 302) and method == "POST")
            ):
                method, kwargs = "GET", {}
        raise ProviderError(f"{redact(url)}: too many redirects")

    @asynccontextmanager
    async def outside(self, url: str, method: str) -> AsyncIterator[Grant]:
        """A request this client does not send itself (the reader's ranged GETs, made with
        http.client in a worker thread), under the same policy: the host must be reachable,
        the request waits its turn in the budget and gets its headers here; its outcome is
        noted on the way out (a host that did not answer is held down, one that answered is
        trusted again, refused credentials are renewed before the next try). In the metrics it
        counts once under `method` (GET: a download, HEAD: a batch of size HEADs), code "ok"
        or "error": the worker tells no status, only success or not."""
        await self.ensure_reachable(url)
        credentials = await self.auth.headers(self) if self.is_trusted(url) else {}
        await self.pace(url)
        token = trio.lowlevel.current_trio_token()

        def pace_from_thread(target: str) -> None:  # before a redirected request, in the worker thread
            trio.from_thread.run(self.pace, target, trio_token=token)

        started = time.monotonic()
        outcome = "error"
        try:
            yield Grant(credentials, self.client.headers["user-agent"], pace_from_thread)
            outcome = "ok"
        except Unreachable as e:
            self.note_unreachable(e.url, e.why)
            raise
        except CredentialsRejected:
            self.auth.invalidate()
            raise
        finally:
            self.stats.request(self.labels, method, outcome, time.monotonic() - started)
        self.note_reachable(url)

    def _raise_for(self, method: str, url: str, response: httpx.Response, expect: tuple[int, ...] | None) -> None:
        status = response.status_code
        retried = status in RETRY_STATUSES or (status == 403 and self.rate_limited_403(response))
        if (expect is None and not retried) or (expect is not None and status in expect):
            return
        self.stats.add("errors")
        where = f"{method} {redact(url)}"
        body = _short(response)
        error: AssetfsError
        if retried:
            wait = retry_after(response)
            refused = status in (429, 403)  # refused for rate, before the provider acted on it
            if refused:
                self.stats.add("rate_limited")
            if refused and wait is not None and self.budget is not None and self.is_api(url):
                self.budget.pause(min(wait, 60.0))  # the whole budget waits, not only this request
            error = Retryable(f"{where}: HTTP {status} {body}", retry_after=wait, not_taken=refused)
        elif status == 404:
            error = Gone(f"{where}: not found")
        elif status == 400 and "does not exist" in body:  # Mudstack's "Parent folder /x/ does not exist"
            error = Gone(f"{where}: HTTP {status} {body}")
        elif status in (401, 403):
            error = AuthFailed(f"{where}: HTTP {status}: the provider refused the credentials {body}")
        else:
            error = ProviderError(f"{where}: HTTP {status} {body}")
        error.http_status = status  # the provider answered no (an upload's answer was not lost)
        raise error

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


def _parse_json(body: bytes):
    """A listing page, by orjson (several times faster); what it refuses but json reads
    (NaN, an integer past 64 bits, a body not in UTF-8) by json, whose error is the one shown."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _short(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # a streamed or undecodable body
        return ""
    text = " ".join(text.split())
    return f"({text[:200]})" if text else ""
