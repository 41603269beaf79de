"""Bad input from APIs (issue 6): hostile and odd names, malformed JSON, wrong types,
missing fields, enormous pages, looping cursors and redirects to other hosts, each served
by the emulator's test-only hostile switch (assetfs/emulator/hostile.py) to a real mount,
and checked with real tools (ls, find, stat, cat).

Whatever the API sends, the mount must not crash (its process lives on and the other
accounts still work), no name may escape its directory, every syscall answers within the
timeout, and each failure gives EIO or ENOENT with a log line that says why.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import emulator_fixture

from assetfs.emulator.hostile import HOSTILE_NAMES

pytestmark = pytest.mark.mount

TIMEOUT = 5.0
OPTIONS = "timeout=5s"
MARGIN = 2.0  # a syscall answers within the timeout plus this
SPECTRUM_ORG = "7000000000000300418"
APPLE_BRAND = "9467895078742654934/9467895078742654921"
WORKSPACE = "Game Art"
ACCOUNT = {"spectrum": "carhartt", "iqmetrix": "stores", "apple": "apple", "mudstack": "studio"}
LISTING = {
    "spectrum": f"carhartt/{SPECTRUM_ORG}",
    "iqmetrix": "stores/logos",
    "apple": f"apple/{APPLE_BRAND}",
    "mudstack": f"studio/{WORKSPACE}",
}
# An asset each listing must still show when the others are broken (its first, left intact).
INTACT = {"spectrum": "team logo.png", "apple": "brand_asset_10101.png", "mudstack": "style-guide.pdf"}
PROVIDERS = list(ACCOUNT)


# An emulator of this module's own: its hostile switch must never reach other tests.
hemu = emulator_fixture("hemu")


@pytest.fixture
def hostile(hemu):
    def switch(**body) -> None:
        # (json.dumps escapes lone surrogates; httpx's own encoder would refuse them)
        hemu.control.post(
            "/_emulator/hostile", content=json.dumps(body), headers={"content-type": "application/json"}
        ).raise_for_status()

    hemu.reset_requests()
    yield switch
    switch(mode="")


@pytest.fixture
def mounted(hemu, mount):
    """A mount of `provider`'s account plus one other (to show the mount still serves)."""

    def start(provider: str, **kwargs):
        other = "studio" if provider != "mudstack" else "carhartt"
        m = mount(hemu.config, options=OPTIONS, accounts=[ACCOUNT[provider], other], **kwargs)
        m.other = other
        return m

    return start


# -- helpers -----------------------------------------------------------------------------------


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """A real tool on the mount; it must answer within the timeout (plus a margin)."""
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, timeout=TIMEOUT + 30)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + MARGIN, f"{args} took {elapsed:.1f}s"
    if check:
        assert done.returncode == 0, (args, done.stderr.decode(errors="replace"))
    return done


def timed_errno(fn, *args) -> tuple[int | None, float]:
    """(errno or None, seconds) of one syscall."""
    started = time.monotonic()
    try:
        fn(*args)
        code = None
    except OSError as e:
        code = e.errno
    return code, time.monotonic() - started


def find0(path: Path) -> list[str]:
    out = run("find", str(path), "-print0", check=False)
    return [p for p in os.fsdecode(out.stdout).split("\0") if p]


def assert_alive(m, hemu=None) -> None:
    """The mount process lives, answers, and another account still lists."""
    assert m.process.poll() is None, m.log()[-3000:]
    os.stat(m.path)
    assert os.listdir(m.path / m.other), "the other account lists nothing"
    assert "failed unexpectedly" not in m.log(), m.log()[-4000:]


def assert_safe_tree(root: Path) -> int:
    """Every entry under `root` has a safe name and resolves inside its parent; the count."""
    count = 0
    for parent, dirs, files in os.walk(root, onerror=lambda e: None):
        real_parent = os.path.realpath(parent)
        for name in dirs + files:
            raw = os.fsencode(name)
            assert name not in ("", ".", ".."), (parent, name)
            assert b"/" not in raw and b"\0" not in raw, (parent, name)
            assert len(raw) <= 255, (parent, name, len(raw))
            assert not any(c < 32 or c == 127 for c in raw), (parent, name)
            assert os.path.dirname(os.path.realpath(os.path.join(parent, name))) == real_parent, (parent, name)
            count += 1
    return count


def names_by_id(directory: Path) -> dict[str, str]:
    out = {}
    for name in os.listdir(directory):
        try:
            out[os.getxattr(directory / name, "user.assetfs.id").decode()] = name
        except OSError:
            pass
    return out


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- hostile and odd names ------------------------------------------------------------------------


def test_spectrum_hostile_names_are_made_safe_and_stay_in_their_directory(hemu, hostile, mounted):
    hostile(mode="hostile_names", provider="spectrum")
    m = mounted("spectrum")
    org = m.path / LISTING["spectrum"]
    listed = run("ls", "-la", str(org))
    assert b"\x00" not in listed.stdout
    names = names_by_id(org)
    # Item i of the page carries HOSTILE_NAMES[i]: the seeded ids 9100…9105, then copies 90000000…
    # (each file: the name, then its content's extension)
    assert names["9100"] == "..\u2215x.png"  # ../x
    assert names["9101"] == "a\u2215b.jpg"  # a/b
    assert names["9102"] == "nul\ufffdbyte.png"  # NUL
    assert names["9103"] == "..jpg"  # .
    assert names["9104"] == "...png"  # ..
    assert names["9105"] == "9105.png"  # empty: the id
    assert names["90000000"] == "90000000.png"  # blank: the id
    assert names["90000001"] == "\u2215.png"  # /
    assert names["90000004"] == "..\u2215..\u2215..\u2215..\u2215etc\u2215passwd.png"
    long_name = names["90000006"]
    assert len(long_name.encode()) <= 255 and long_name.startswith("xxxx") and long_name.endswith(".png")
    accented = names["90000007"]
    assert len(accented.encode()) <= 255 and accented.startswith("éé") and accented.endswith(".png")
    # A lone surrogate in the JSON: U+FFFD in the name (asset.json keeps it escaped).
    assert names["90000008"] == "\ufffdlone surrogate.png"
    assert names["90000010"] == "x.png"
    assert names["90000014"] == "trailing .png"
    assert names["90000015"] == "日本語の名前.png"
    assert len(set(names.values())) == len(names) >= 21
    assert sorted(os.listdir(org / ".assets")) == sorted(names.values())  # each with its directory

    # Nothing escaped: `x` is only where the API put it, nothing is named passwd, and every
    # entry of the tree resolves inside its own parent.
    found_x = [p for p in find0(m.path) if os.path.basename(p) == "x.png"]
    orgs = hemu.account("spectrum")["organizations"]  # every organization's page is hostile
    assert sorted(found_x) == sorted(
        [str(m.path / "carhartt" / o / "x.png") for o in orgs]
        + [str(m.path / "carhartt" / o / ".assets" / "x.png") for o in orgs]
    )
    assert not [p for p in find0(m.path) if os.path.basename(p) in ("passwd", "passwd.png")]
    assert assert_safe_tree(org) >= 3 * 21
    # Each is a working asset: stat, its directory, its file's bytes.
    for name in ("..\u2215x.png", "...png", "\u2215.png", "9105.png", long_name):
        run("stat", str(org / name))
        assert "asset.json" in os.listdir(org / ".assets" / name)
        assert run("cat", str(org / name)).stdout
    assert_alive(m)


@pytest.mark.parametrize("provider", ["iqmetrix", "apple", "mudstack"])
def test_hostile_names_of_other_providers_are_safe(hemu, hostile, mounted, provider):
    # (The lone surrogate has a test of its own below.)
    hostile(mode="hostile_names", provider=provider, names=[n for n in HOSTILE_NAMES if "\udc80" not in n])
    m = mounted(provider)
    top = m.path / LISTING[provider]
    if provider == "iqmetrix":
        roots = [m.path / "stores" / c for c in ("logos", "banners", "media")]
    else:
        roots = [top]
    total = 0
    for root in roots:
        run("ls", "-la", str(root))
        names = os.listdir(root)
        assert len(names) == len(set(names))
        total += len(names)
        total += assert_safe_tree(root)
        for name in names:  # every asset opens: stat, its directory, its xattrs
            run("stat", str(root / name))
    assert total >= (9 if provider == "iqmetrix" else 22)
    everything = find0(m.path / ACCOUNT[provider])
    assert not [p for p in everything if os.path.basename(p) in ("passwd", "..", ".")]
    # `x` (and `../x` beside it) stay in the directories the API put them in: never at the
    # mount's or the account's top, and every entry resolves inside its own parent.
    xs = [p for p in everything if os.path.splitext(os.path.basename(p))[0] == "x"]
    assert (xs or provider == "iqmetrix") and all(
        os.path.dirname(p) not in (str(m.path), str(m.path / ACCOUNT[provider])) for p in xs
    ), xs
    assert assert_safe_tree(m.path / ACCOUNT[provider]) == len(everything) - 1
    assert_alive(m)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_lone_surrogate_in_an_answer_shows_as_u_fffd(hemu, hostile, mounted, provider):
    """JSON may carry "\\udc80", which no file name or UTF-8 file can: the name shows U+FFFD,
    asset.json and the xattrs keep the escape, the asset is listed and opens."""
    hostile(mode="hostile_names", provider=provider, names=["\udc80lone surrogate", "plain"])
    m = mounted(provider)
    top = m.path / LISTING[provider]
    roots = [m.path / "stores" / c for c in ("logos", "banners", "media")] if provider == "iqmetrix" else [top]
    found = [r / n for r in roots for n in os.listdir(r) if n.startswith("\ufffdlone surrogate")]
    assert found, m.log()[-2000:]
    for path in found:
        details = path.parent / ".assets" / path.name
        assert "asset.json" in os.listdir(details)
        assert b"\\udc80lone surrogate" in (details / "asset.json").read_bytes()
        run("getfattr", "-d", str(path))
    assert "left out" not in m.log()
    assert_alive(m)


@pytest.mark.parametrize("provider,size", [("spectrum", 3000), ("mudstack", 2000), ("apple", 2000)])
def test_thousands_of_duplicate_names_get_unique_stable_names(hemu, hostile, mounted, provider, size):
    hostile(mode="duplicates", provider=provider, size=size, name="same.png")
    m = mounted(provider)
    top = m.path / LISTING[provider]
    listed = run("ls", "-f", str(top)).stdout.decode().split("\n")
    assets = [n for n in listed if n.startswith("same")]
    assert len(assets) == size == len(set(assets))
    assert "same.png" not in assets  # every duplicate is told apart by its id
    # The same asset keeps its name: listed again after the cache is gone (a new mount), the same names.
    again = mounted(provider)
    relisted = [
        n
        for n in run("ls", "-f", str(again.path / LISTING[provider])).stdout.decode().split("\n")
        if n.startswith("same")
    ]
    assert sorted(relisted) == sorted(assets)
    assert_alive(m)


def test_thousands_of_assets_with_one_id_and_one_name(hemu, hostile, mounted):
    """A broken API repeating one asset 3000 times: the mount lists it quickly, once per entry."""
    hostile(mode="duplicates", provider="spectrum", size=3000, name="clone", same_id=True)
    m = mounted("spectrum")
    started = time.monotonic()
    listed = run("ls", "-f", str(m.path / LISTING["spectrum"])).stdout.decode().split("\n")
    assert time.monotonic() - started < TIMEOUT
    clones = [n for n in listed if n.startswith("clone")]
    assert len(clones) == len(set(clones)) and len(clones) >= 1
    assert_alive(m)


# -- malformed, wrong-typed and incomplete answers --------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_malformed_json_answers_eio_with_a_log_line_then_recovers(hemu, hostile, mounted, provider):
    m = mounted(provider)
    hostile(mode="malformed_json", provider=provider)
    top = m.path / LISTING[provider]
    code, seconds = timed_errno(os.listdir, top)
    assert code == errno.EIO and seconds < TIMEOUT + MARGIN
    assert "malformed JSON" in m.log()
    assert_alive(m)
    hostile(mode="")
    assert os.listdir(top)  # nothing bad was cached: the next listing works


@pytest.mark.parametrize("provider", ["spectrum", "apple", "mudstack"])
def test_wrong_types_skip_the_bad_assets_and_show_the_rest(hemu, hostile, mounted, provider):
    hostile(mode="wrong_types", provider=provider)
    m = mounted(provider)
    top = m.path / LISTING[provider]
    run("ls", "-la", str(top))
    assert INTACT[provider] in os.listdir(top)
    for p in find0(top):  # every entry answers stat (or a clean EIO/ENOENT) in time
        code, seconds = timed_errno(os.stat, p)
        assert code in (None, errno.EIO, errno.ENOENT) and seconds < TIMEOUT + MARGIN, (p, code)
    assert_safe_tree(top)
    assert_alive(m)


def test_iqmetrix_wrong_types_show_the_asset_under_its_id(hemu, hostile, mounted):
    hostile(mode="wrong_types", provider="iqmetrix")
    m = mounted("iqmetrix")
    top = m.path / "stores" / "logos"
    names = os.listdir(top / ".assets")  # no content to show as a file: only its details
    assert "732130d2-b673-461c-812b-f2b614d6076e" in names  # name 42 is not a name: the id is
    assert_safe_tree(top)
    for p in find0(top):
        code, seconds = timed_errno(os.stat, p)
        assert code in (None, errno.EIO, errno.ENOENT) and seconds < TIMEOUT + MARGIN, (p, code)
    assert_alive(m)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_listing_of_the_wrong_type_answers_eio_with_a_log_line(hemu, hostile, mounted, provider):
    hostile(mode="wrong_envelope", provider=provider)
    m = mounted(provider)
    started = time.monotonic()
    try:
        names = os.listdir(m.path / LISTING[provider])
        code = None
    except OSError as e:
        code = e.errno
    assert time.monotonic() - started < TIMEOUT + MARGIN
    if provider == "iqmetrix":  # one request per asset: each bad answer leaves its asset out
        assert code is None and names == [".assets"] and "not an asset object; it is left out" in m.log()
    else:
        assert code == errno.EIO and "WARNING" in m.log() and " list" in m.log(), m.log()[-2000:]
    assert_alive(m)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_fields_never_crash_and_the_rest_is_listed(hemu, hostile, mounted, provider):
    hostile(mode="missing_fields", provider=provider)
    m = mounted(provider)
    top = m.path / LISTING[provider]
    run("ls", "-la", str(top))
    names = os.listdir(top)
    if provider == "apple":  # every image's metadata lost its type (and file name): no extension
        assert "brand_asset_10101" in names
    elif provider in INTACT:
        assert INTACT[provider] in names
    else:  # iQmetrix: named by id, no content file but asset.json: only under .assets/
        assert names == [".assets"] and len(os.listdir(top / ".assets")) == 4
    for p in find0(top):
        code, seconds = timed_errno(os.stat, p)
        assert code in (None, errno.EIO, errno.ENOENT) and seconds < TIMEOUT + MARGIN, (p, code)
    assert_safe_tree(top)
    assert_alive(m)


# -- enormous pages and cursors that loop ------------------------------------------------------------


@pytest.mark.parametrize("provider,size", [("spectrum", 50_000), ("mudstack", 20_000)])
def test_an_enormous_page_lists_or_fails_cleanly_and_the_mount_stays_responsive(hemu, hostile, mounted, provider, size):
    """The timeout bounds the wait for the provider; building tens of thousands of entries is
    CPU bounded by the page (seconds on this machine) and is done off the event loop, so that
    the mount answers everything else meanwhile."""
    hostile(mode="huge_page", provider=provider, size=size)
    m = mounted(provider)
    top = m.path / LISTING[provider]
    started = time.monotonic()
    listing = open(m.path.parent / "ls.out", "w+b")
    ls = subprocess.Popen(["ls", "-f", str(top)], stdout=listing, stderr=subprocess.PIPE)
    slowest = 0.0
    while ls.poll() is None and time.monotonic() - started < 60:
        asked = time.monotonic()
        (m.path / ".assetfs" / "status.json").read_bytes()  # answered from memory
        slowest = max(slowest, time.monotonic() - asked)
        time.sleep(0.1)
    _, err = ls.communicate(timeout=30)
    seconds = time.monotonic() - started
    listing.seek(0)
    out = listing.read()
    listing.close()
    count = len([n for n in out.decode().split("\n") if n.startswith("huge ")])
    rss = vm_hwm_mb(m.process.pid)
    print(
        f"{provider}: {size} assets in one page: ls rc={ls.returncode} {count} listed in {seconds:.1f}s, "
        f"status.json meanwhile within {slowest:.2f}s, peak RSS {rss:.0f} MB"
    )
    if ls.returncode == 0:  # the page's own assets keep their names, the copies are "huge NNNNNN"
        assert size - 10 < count < size
    else:
        assert b"Input/output error" in err
    assert seconds < 45 and rss < 1500
    # Meanwhile the mount answers other syscalls within the timeout (it froze for the whole
    # listing, 10 s and more, when the entries were built on the event loop).
    assert slowest < TIMEOUT + MARGIN, f"the mount answered nothing for {slowest:.1f}s"
    assert_alive(m)


def _requests_to(hemu, fragment: str) -> int:
    return sum(n for path, n in hemu.requests().items() if fragment in path)


@pytest.mark.parametrize("fresh", [False, True], ids=["same-cursor", "new-cursor-each-page"])
def test_apple_cursor_that_loops_stops_with_a_log_line(hemu, hostile, mounted, fresh):
    hostile(mode="looping_cursor", provider="apple", fresh=fresh)
    m = mounted("apple")
    code, seconds = timed_errno(os.listdir, m.path / LISTING["apple"])
    assert seconds < TIMEOUT + MARGIN
    assert code in (None, errno.EIO)
    assert "cursor" in m.log() or "repeats" in m.log(), m.log()[-2000:]
    assert _requests_to(hemu, "/brands/9467895078742654921/assets") <= 5
    assert_alive(m)


def test_mudstack_pages_that_repeat_with_an_absurd_total_stop_with_a_log_line(hemu, hostile, mounted):
    hostile(mode="looping_cursor", provider="mudstack", total=10_000_000)
    m = mounted("mudstack")
    code, seconds = timed_errno(os.listdir, m.path / LISTING["mudstack"])
    assert seconds < TIMEOUT + MARGIN and code in (None, errno.EIO)
    assert "repeat" in m.log(), m.log()[-2000:]
    assert _requests_to(hemu, "/workspaces/assets/search") < 50
    assert vm_hwm_mb(m.process.pid) < 500
    assert_alive(m)


@pytest.mark.parametrize("fresh", [False, True], ids=["same-page", "endless-new-ids"])
def test_spectrum_pages_that_never_end_stop_within_the_timeout(hemu, hostile, mounted, fresh):
    hostile(mode="looping_cursor", provider="spectrum", fresh=fresh)
    m = mounted("spectrum")
    code, seconds = timed_errno(os.listdir, m.path / LISTING["spectrum"])
    assert seconds < TIMEOUT + MARGIN and code in (None, errno.EIO)
    if not fresh:
        assert code is None and "repeat" in m.log(), m.log()[-2000:]
    assert vm_hwm_mb(m.process.pid) < 800
    assert_alive(m)


# -- redirects to other hosts ----------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Another host: records what reaches it and answers 200 with a little JSON."""

    seen: list[dict] = []

    def _answer(self) -> None:
        type(self).seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})
        body = json.dumps({"contents": [], "data": [], "assets": [], "url": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def elsewhere():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


SECRET_HEADERS = {"authorization", "spectrum_api_token", "spectrum-api-token", "x-account-id", "cookie"}


def assert_no_credentials(seen: list[dict], *secrets: str) -> None:
    for request in seen:
        names = {k.lower() for k in request["headers"]}
        assert not names & SECRET_HEADERS, request
        blob = json.dumps(request)
        for secret in secrets:
            assert secret not in blob, request


@pytest.mark.parametrize(
    "provider,fragment,what",
    [
        ("spectrum", "/cdn/", "content"),
        ("spectrum", "/organization/", "listing"),
        ("apple", "/brands/9467895078742654921/assets", "listing"),
        ("mudstack", "/workspaces/assets/search", "listing"),
        ("iqmetrix", "/iqmetrix/images/", "content"),
    ],
)
def test_redirects_to_another_host_never_carry_credentials(hemu, hostile, mounted, elsewhere, provider, fragment, what):
    target, seen = elsewhere
    m = mounted(provider)
    top = m.path / LISTING[provider]
    if what == "content":
        file = next(p for p in sorted(top.iterdir()) if p.is_file())
        hostile(mode="redirect_elsewhere", target=target, path_contains=fragment)
        code, seconds = timed_errno(lambda p: Path(p).read_bytes(), file)
    else:
        hostile(mode="redirect_elsewhere", target=target, path_contains=fragment)
        code, seconds = timed_errno(os.listdir, top)
    assert seconds < TIMEOUT + MARGIN and code in (None, errno.EIO, errno.ENOENT)
    assert seen, "the redirect was not followed at all"
    print(
        f"{provider} {what} redirected elsewhere: errno {code}; the other host got "
        f"{[(r['method'], r['path'].split('?')[0][:50], sorted(r['headers'])) for r in seen]}"
    )
    account = hemu.account(provider)
    assert_no_credentials(
        seen,
        *[
            str(account[k])
            for k in ("token", "key", "secret", "client_secret", "password", "account_id")
            if k in account
        ],
    )
    hostile(mode="")
    assert_alive(m)


@pytest.mark.parametrize(
    "provider,fragment", [("iqmetrix", "/oauth2/token"), ("apple", "/oauth2/token"), ("mudstack", "/auth/token")]
)
def test_a_token_service_redirecting_elsewhere_gets_no_credentials(
    hemu, hostile, mounted, elsewhere, provider, fragment
):
    target, seen = elsewhere
    hostile(mode="redirect_elsewhere", target=target, path_contains=fragment, status=307)
    m = mounted(provider)
    code, seconds = timed_errno(os.listdir, m.path / LISTING[provider])
    assert code in (errno.EIO, errno.EACCES) and seconds < TIMEOUT + MARGIN
    assert not seen, seen  # a 307 would resend the password or secret: never followed
    hostile(mode="")
    assert_alive(m)
