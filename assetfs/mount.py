"""Build the mount from a config and options, run it, and take it down cleanly."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import trio

from .config import Config
from .control import ControlSocket
from .errors import ConfigError
from .fuse_ops import Operations
from .metacache import MetaCache
from .metrics import MetricsServer
from .notify import notify
from .options import MountOptions
from .poller import Poller
from .providers.registry import build_provider
from .read.blockcache import BlockCache
from .read.pool import ReaderPool
from .state import StateDir, private_dir
from .stats import Stats
from .thumbnails.filler import Filler
from .thumbnails.standard import ThumbnailCache, default_dir
from .view.refresh import Refresher
from .view.view import View
from .write.journal import PENDING, Journal
from .write.spool import Spool
from .write.writer import Writer

log = logging.getLogger("assetfs.mount")


class Mount:
    """Everything one mount holds: providers, caches, the tree and the FUSE operations."""

    def __init__(self, config: Config, mountpoint: Path, options: MountOptions):
        self.mountpoint = mountpoint.resolve()
        self.options = options
        self.stats = Stats()
        cache_dir = Path(os.path.expanduser(options.cache_dir)) if options.cache_dir else config.cache.path
        state_dir = Path(os.path.expanduser(options.state_dir)) if options.state_dir else config.state.path
        self.state = StateDir(state_dir)
        self.state.lock(self.mountpoint)  # before anything is read or moved: one mount per journal
        private_dir(cache_dir)
        self.state.adopt_from(cache_dir)
        for sub in ("metadata", "blocks"):
            private_dir(cache_dir / sub)  # what users wrote and read is nobody else's business
        self.cache_dir = cache_dir
        ttl = options.metadata_ttl if options.metadata_ttl is not None else config.cache.metadata_ttl
        self.metacache = MetaCache(cache_dir / "metadata", ttl)
        self.blocks = BlockCache(cache_dir / "blocks", options.cache_size or config.cache.max_size, options.block_size)
        self.providers = {name: build_provider(name, config, self.stats, options.timeout) for name in config.accounts}
        for name, provider in self.providers.items():
            provider.memory = self.state.memory(name)
            provider.http.labels = (name, config.accounts[name].provider)
        self.readers = ReaderPool(self.blocks, self.stats, options.read_ahead, options.timeout)
        self.readers.warm_multi = options.first_blocks_ahead > 0  # their batches' connection, opened on listing
        if options.write_back is None:
            options.write_back = config.cache.write_back
        self.view = View(self.providers, self.metacache, self.stats, self.status_json, self.state.given())
        self.view.sizes.at_once = options.heads_at_once
        self.spool = Spool(self.state.spool)
        self.journal = Journal(self.state.journal)
        self.writer = Writer(self.view, self.journal, self.spool, self.providers, self.stats, options)
        self.uploader = self.writer.uploader
        filler = None
        if options.thumbnails or config.thumbnails.enable:
            owner = (options.uid, options.gid) if os.geteuid() == 0 else None  # root mounting for a user
            thumbnails = ThumbnailCache(config.thumbnails.path or default_dir(), owner)
            filler = Filler(thumbnails, self.mountpoint, self.view, self._shown_mtime)
        # Changes made elsewhere: polled (if on) and on request (`assetfs refresh`).
        self.refresher = Refresher(self.view)
        self.ops = Operations(
            self.view, self.readers, options, self.stats, self.writer, thumbnails=filler, on_gone=self.refresher.heal
        )
        self.metacache.last_request = lambda: self.ops.last_request
        self.poll_interval = options.poll_every(config.cache.poll_interval)
        self.poller = Poller(self.providers, self.poll_interval, self.refresher.changed) if self.poll_interval else None
        if self.poller is not None:
            self.view.on_listed = self.poller.listed
        self.control = ControlSocket(self.state.path)
        listen = options.metrics_listen(config.metrics.listen)
        self.metrics = MetricsServer(listen, self.stats, lambda: len(self.uploader.pending())) if listen else None

    def _shown_mtime(self, node) -> float:
        return self.ops.attributes.stat(node, 0).st_mtime_ns / 1e9

    def status_json(self) -> bytes:
        status = {
            "mountpoint": str(self.mountpoint),
            "pid": os.getpid(),
            "accounts": {name: type(p).name for name, p in self.providers.items()},
            "counters": self.stats.snapshot(),
            "cache": {"dir": str(self.cache_dir), "block_bytes": self.blocks.volume()},
            "state": {"dir": str(self.state.path)},
            "control": str(self.control.path) if self.control.path else None,
            "metrics": self.metrics.url if self.metrics and self.metrics.serving else None,
            "poll_interval": self.poll_interval,
            "inodes": len(self.view.inodes),
            "pending_uploads": [
                {
                    "name": r.name,
                    "account": r.account,
                    "state": r.state,
                    "size": r.size,
                    "attempts": r.attempts,
                    "error": r.last_error,
                }
                for r in self.uploader.pending()
            ]
            + [  # renames waiting out the write-back window (write/saves.py)
                {
                    "name": f"{a.old_name} → {a.backup.name}",
                    "account": a.container.owner.account,
                    "state": "pending",
                    "size": 0,
                }
                for a in self.writer.aways.pending()
            ],
        }
        return (json.dumps(status, indent=2) + "\n").encode()

    def attach(self, nursery: trio.Nursery) -> None:
        """The nursery the parts that work in the background (read-ahead, sizes asked ahead,
        thumbnails, healing) run in."""
        self.readers.nursery = nursery
        self.view.sizes.nursery = nursery
        self.writer.aways.nursery = nursery
        if self.ops.thumbnails is not None:
            self.ops.thumbnails.nursery = nursery
        self.refresher.nursery = nursery

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        # Worker threads (downloads, disk cache) must hand the GIL back to the event loop
        # quickly, or every FUSE request waits out Python's default 5 ms switch interval.
        sys.setswitchinterval(0.0005)
        _return_freed_blocks_to_the_system()
        _collect_garbage_less_often()
        if self.metrics is not None:
            try:
                self.metrics.start()
            except ConfigError as e:
                log.error("%s", e)
                await self.close()
                raise SystemExit(2) from None
        pyfuse3.init(self.ops, str(self.mountpoint), self.options.kernel_options())
        try:
            async with trio.open_nursery() as nursery:
                self.attach(nursery)
                nursery.start_soon(self._stop_on_signal)
                nursery.start_soon(self._widen_kernel_readahead)
                nursery.start_soon(self.uploader.run)
                nursery.start_soon(self.control.serve, self._control)
                if self.poller is not None:
                    nursery.start_soon(self.poller.run)
                log.info("mounted %s", self.mountpoint)
                if ready:
                    ready()
                notify("READY=1", f"STATUS=mounted at {self.mountpoint}")
                nursery.start_soon(self._report_status)
                await pyfuse3.main(min_tasks=4, max_tasks=64)
                nursery.cancel_scope.cancel()
        finally:
            pyfuse3.close(unmount=True)
            if self.metrics is not None:
                self.metrics.stop()
            await self.close()
            log.info("unmounted %s", self.mountpoint)

    async def _control(self, request: dict) -> dict:
        """A request on the control socket: {"refresh": "/path/in/the/mount"}."""
        path = request.get("refresh")
        if not isinstance(path, str):
            raise ValueError('expected {"refresh": "/path/in/the/mount"}')
        with trio.fail_after(self.options.timeout):
            node = self.view.root
            for name in filter(None, path.split("/")):
                node = await self.view.lookup(node, name)
            if not node.is_dir or node.provider is None:
                raise ValueError(f"{path}: not a directory of a provider")
            await self.refresher.refresh(node)
        return {"refreshed": path}

    async def close(self) -> None:
        """Let go of the providers' connections and the disk stores."""
        for provider in self.providers.values():
            with trio.move_on_after(2):
                await provider.close()
        self.readers.stop()
        self.metacache.close()
        self.blocks.close()
        self.journal.close()
        self.state.unlock()

    async def _widen_kernel_readahead(self) -> None:
        """Let the kernel read ahead READ_AHEAD_BLOCKS blocks instead of 128 KiB: requests of
        up to 1 MiB (FUSE's largest), several in flight; and with a window of more than one
        block, the requests of `cat`, `cp` or fio start on block boundaries, so each answer
        is a slice of one block (with a one-block window they started half a block in, and
        each answer joined two blocks: a copy of every MiB). Needs root; harmless without."""
        try:
            # A stat of the mountpoint is a request to this mount: a stop that comes first
            # (pyfuse3 no longer answering) must not wait for it. The unmount ends it.
            st = await trio.to_thread.run_sync(os.stat, self.mountpoint, abandon_on_cancel=True)
            knob = Path(f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb")
            kilobytes = max(128, READ_AHEAD_BLOCKS * self.options.block_size // 1024)
            await trio.to_thread.run_sync(knob.write_text, str(kilobytes))
        except OSError as e:
            log.debug("kernel read-ahead left as it is: %s", e)

    async def _stop_on_signal(self) -> None:
        """SIGTERM, SIGINT, SIGHUP: wait (bounded) for pending uploads, then unmount; a
        second signal unmounts at once. SIGUSR1: log what every task is doing."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1) as signals:
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    log.warning("tasks now:\n%s", task_stacks())
                    continue
                log.info("%s: unmounting", signal.Signals(signum).name)
                notify("STOPPING=1", "STATUS=unmounting")
                with trio.move_on_after(STOP_WAIT) as waited:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._drain_uploads, nursery.cancel_scope)
                        async for _ in signals:  # a second signal: stop waiting
                            log.warning("second signal: unmounting now; pending uploads resume at the next mount")
                            nursery.cancel_scope.cancel()
                if waited.cancelled_caught:
                    log.warning("uploads still pending after %.0fs: kept, they resume at the next mount", STOP_WAIT)
                pyfuse3.terminate()
                return

    async def _drain_uploads(self, done: trio.CancelScope) -> None:
        self.uploader.hurry()  # nothing waits out its write-back delay once the mount is stopping
        await self.writer.aways.end_all()
        while due := [r for r in self.uploader.pending() if r.state == PENDING]:
            notify(f"STATUS=unmounting: waiting for {len(due)} pending upload(s)")
            log.info("waiting for %d pending upload(s) before unmounting", len(due))
            await trio.sleep(1)
        done.cancel()

    async def _report_status(self) -> None:
        """STATUS= lines for `systemctl status`, every few seconds."""
        while True:
            counters = self.stats.counters
            pending = len([r for r in self.uploader.pending() if r.state == PENDING])
            notify(
                f"STATUS=mounted at {self.mountpoint}: {counters['requests']} requests, "
                f"{counters['errors']} errors, {pending} pending uploads"
            )
            await trio.sleep(STATUS_EVERY)


READ_AHEAD_BLOCKS = 4  # the kernel's read-ahead window, in blocks
STOP_WAIT = 600.0  # seconds a stop waits for pending uploads before unmounting anyway
STATUS_EVERY = 10.0


def task_stacks() -> str:
    """Every trio task with where it is waiting (for SIGUSR1)."""
    lines: list[str] = []

    def walk(task, depth: int) -> None:
        frames = [
            f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{lineno} {f.f_code.co_name}"
            for f, lineno in task.iter_await_frames()
        ]
        lines.append("  " * depth + f"{task.name}: " + (" → ".join(frames) or "(running)"))
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(lines)


def _return_freed_blocks_to_the_system() -> None:
    """Blocks are 1 MiB buffers made and freed at network speed. Below a fixed threshold
    they come from glibc's heap and are reused (each fresh mmap of a block costs 256 page
    faults and zeroing: ~20% of a cold read's CPU when blocks were mmapped); a fixed
    threshold also stops glibc from moving ever bigger buffers onto the heap and keeping
    them, so resident memory stays near what the mount holds (measured: +25 MB). Freed
    memory up to TRIM_THRESHOLD stays in the heap for the next blocks (glibc's 128 KiB
    would hand each freed block back and fault the next one in again), and one heap serves
    every thread: blocks are made in download threads and freed on the event loop, and
    per-thread heaps each grew, shrank and faulted on their own (measured, a cold read of
    512 MiB: 50,000 page faults with glibc's defaults, 28,000–42,000 with the threshold
    alone, 20,000 — the heap's first growth — with both; peak RSS 120–140 MB)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
        libc.mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


TRIM_THRESHOLD = 32 << 20


def _collect_garbage_less_often() -> None:
    """A listing of thousands of assets makes millions of objects, none of them in a cycle
    (refcounting frees them): with Python's default of a young collection every 700 new
    objects, the collector walked them over and over: 15% of the CPU of a cold listing
    of 10,000 Mudstack assets (measured; within noise for Spectrum's smaller ones). What
    was loaded at start (modules, config) is frozen out of its walks."""
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 20, 100)


YOUNG_COLLECTION_EVERY = 50_000  # new objects (Python's default: 700)
