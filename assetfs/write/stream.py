"""A new file's upload that starts at its first write: the request body follows the spool
as it grows (its end is not known yet, so it goes out in chunked transfer encoding), and
the close ends it and waits for the provider's answer.

The spool still holds every byte: anything that breaks the sequential pattern (a write at
another offset, a truncate, a rename, a removal) cancels the stream before its body is
complete, so the provider cannot have made anything of it, and the close uploads from the
spool as it always did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

import trio

from ..errors import ProviderError
from ..providers.base import Entry, Upload
from .spool import SpoolFile

CHUNK = 1 << 20  # the most read from the spool for one piece of the body
HELD = 8 << 20  # written bytes kept in memory for the body until it catches up (else read back)


class StreamCancelled(ProviderError):
    """The stream was given up (the file stopped being written in order); the close uploads
    from the spool instead."""


class LiveUpload:
    """The body of an upload that is under way while its file is written, and its outcome.

    `written`: bytes appended in order so far (all of them in the spool); `final`: the file's
    size once the close ends the body. `ended` is set once the last byte was handed over:
    from then on the provider may have acted on it."""

    def __init__(self, spool: SpoolFile, upload: Upload):
        self.spool = spool
        self.upload = upload
        self.written = 0
        self.final: int | None = None
        self.ended = False
        self.scope = trio.CancelScope()
        self.reason = ""  # why it was cancelled
        self.asset: Entry | None = None
        self.error: BaseException | None = None
        self.done = trio.Event()
        self._grown = trio.Event()
        self._fresh: deque[tuple[int, bytes]] = deque()  # (offset, bytes) written, not yet sent
        self._held = 0

    @property
    def live(self) -> bool:
        """Still following the file (neither cancelled nor answered)."""
        return not self.reason and not self.done.is_set()

    def grow(self, offset: int, data: bytes, length: int) -> bool:
        """The first `length` bytes of `data` were written at `offset`: False unless they
        follow the last ones. While the body keeps up, it sends them from here rather than
        reading them back from the spool."""
        if offset != self.written or self.final is not None:
            return False
        self.written += length
        if self._held + length <= HELD:
            self._fresh.append((offset, data if length == len(data) else data[:length]))
            self._held += length
        else:  # the body lags: it reads from the spool
            self._fresh.clear()
            self._held = 0
        self._grown.set()
        return True

    def _take(self, offset: int) -> bytes | None:
        """The written bytes that start at `offset`, if still held."""
        while self._fresh and self._fresh[0][0] < offset:
            self._held -= len(self._fresh.popleft()[1])
        if self._fresh and self._fresh[0][0] == offset:
            data = self._fresh.popleft()[1]
            self._held -= len(data)
            return data
        return None

    def cancel(self, reason: str) -> None:
        """Give the stream up; its body is cut before its end (nothing was made of it)."""
        if not self.live:
            return
        self.reason = reason
        self.scope.cancel()
        self._fresh.clear()
        self._grown.set()

    def finish(self, size: int, md5: str, xattrs: dict[str, str]) -> bool:
        """The close: end the body at `size`, with the checksum the provider's answer is
        checked against. False (and cancelled) unless the stream carried exactly these
        bytes under the same attributes."""
        if not self.live:
            return False
        if size != self.written:
            self.cancel(f"{self.written} bytes streamed, {size} in the file")
            return False
        if xattrs != self.upload.xattrs:
            self.cancel("attributes set while it was written")
            return False
        self.upload.size, self.upload.md5 = size, md5
        self.final = size
        self._grown.set()
        return True

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes as they are written (each call starts again at 0: the spool has
        them all); ends once `finish` says how many there are."""
        offset = 0
        while True:
            if self.reason:
                raise StreamCancelled(f"stream of {self.upload.name} cancelled: {self.reason}")
            if offset < self.written:
                chunk = self._take(offset) or self.spool.read(offset, min(CHUNK, self.written - offset))
                if not chunk:
                    raise StreamCancelled(f"stream of {self.upload.name}: the spool ended at {offset} bytes")
                offset += len(chunk)
                yield chunk
            elif self.final is not None:
                self.ended = True  # what the provider's format puts after the bytes follows at once
                return
            else:
                self._grown = trio.Event()
                await self._grown.wait()

    async def outcome(self) -> Entry:
        """The provider's answer to the finished stream: the asset, or the error."""
        await self.done.wait()
        if self.asset is not None:
            return self.asset
        raise self.error if self.error is not None else StreamCancelled(self.reason or "no answer")
