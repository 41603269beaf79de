"""What every libcurl multi handle of the mount shares (read/heads.py, read/multi.py): its
easy handles set up the same way, and libcurl's errors that mean a host did not answer.
pycurl is imported only when called: libcurl and OpenSSL take 9 MB a mount that never asks
does not need."""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pycurl


def multiplexing():
    """A multi handle that puts requests to one HTTP/2 host on streams of one connection."""
    import pycurl

    multi = pycurl.CurlMulti()
    multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
    return multi


def new_handle(timeout: float, ca: dict[int, str]) -> pycurl.Curl:
    """HTTP/2 where TLS offers it, no redirect followed (the file's own request follows it,
    under the full policy), HTTP(S) only, the request's timeout; `ca` from `ca_options`."""
    import pycurl

    handle = pycurl.Curl()
    handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_2TLS)
    handle.setopt(pycurl.NOSIGNAL, 1)
    handle.setopt(pycurl.FOLLOWLOCATION, 0)
    handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    handle.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
    handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(min(timeout, 10.0) * 1000))
    for option, value in ca.items():
        handle.setopt(option, value)
    return handle


def ca_options() -> dict[int, str]:
    """The system's certificates, as the data plane's http.client uses them."""
    import pycurl

    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.exists(paths.cafile):
        return {pycurl.CAINFO: paths.cafile}
    if paths.capath and os.path.isdir(paths.capath):
        return {pycurl.CAPATH: paths.capath}
    return {}


def no_answer() -> set[int]:
    """libcurl's errors that mean the host did not answer at all (as opposed to a bad answer)."""
    import pycurl

    return {
        pycurl.E_COULDNT_CONNECT,
        pycurl.E_OPERATION_TIMEDOUT,
        pycurl.E_COULDNT_RESOLVE_HOST,
        pycurl.E_COULDNT_RESOLVE_PROXY,
    }


def close_all(multi, busy, idle) -> None:
    """Let go of a multi handle and its easy handles, in flight (`busy`) or not."""
    for handle in list(busy):
        multi.remove_handle(handle)
    for handle in list(idle) + list(busy):
        handle.close()
    multi.close()
