"""The running mount's control socket, for commands that ask it to do something now
(`assetfs refresh PATH…`): one JSON request line in, one JSON answer line out. The socket
lives in the state dir (0700), or in a private temporary dir when that path is too long for
a Unix socket; status.json says where."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

log = logging.getLogger("assetfs.control")

SOCKET_NAME = "control.sock"
MAX_PATH = 100  # a Unix socket's path must fit in 108 bytes
MAX_REQUEST = 1 << 20


class ControlSocket:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.path: Path | None = None  # once served
        self._private: Path | None = None

    async def serve(self, handle: Callable[[dict], Awaitable[dict]]) -> None:
        """Answer requests until cancelled; each answer is `handle(request)`, or the error."""
        self.path = self.state_dir / SOCKET_NAME
        if len(os.fsencode(self.path)) > MAX_PATH:
            self._private = Path(tempfile.mkdtemp(prefix="assetfs-"))
            self.path = self._private / SOCKET_NAME
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path.unlink(missing_ok=True)  # left by a mount that was killed
        await sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(8)

        async def one(stream: trio.SocketStream) -> None:
            async with stream:
                data = b""
                while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                    chunk = await stream.receive_some()
                    if not chunk:
                        break
                    data += chunk
                try:
                    answer = await handle(json.loads(data))
                except Exception as e:  # a bad request or a failed action: said to the asker
                    answer = {"error": str(e) or type(e).__name__}
                await stream.send_all(json.dumps(answer).encode() + b"\n")

        try:
            await trio.serve_listeners(one, [trio.SocketListener(sock)])
        finally:
            self.close()

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)


def ask(path: str | Path, request: dict, timeout: float) -> dict:
    """Send one request to a mount's control socket and return its answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
