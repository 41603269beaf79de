"""systemd's notify protocol (sd_notify): READY=1, STATUS=…, STOPPING=1 to $NOTIFY_SOCKET.

Nothing happens when the variable is unset (not started by systemd as Type=notify)."""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=mounted") in one datagram; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not lines:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
        return True
    except OSError:
        return False
