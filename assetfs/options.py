"""Mount options (`-o uid=…,ro,…`): what they mean for the mount, parsed in one place."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from .errors import ConfigError
from .metrics import checked_listen
from .units import parse_duration, parse_interval, parse_size

# Options passed straight to the kernel / libfuse.
FUSE_PASSTHROUGH = {
    "allow_other",
    "allow_root",
    "default_permissions",
    "noatime",
    "nodev",
    "nosuid",
    "dev",
    "suid",
    "exec",
    "noexec",
    "atime",
    "relatime",
    "sync",
    "async",
    "dirsync",
}
# fstab and systemd noise that means nothing to the mount itself.
IGNORED = {"_netdev", "auto", "noauto", "nofail", "user", "users", "nouser", "owner", "defaults", "rw", "comment"}


@dataclass
class MountOptions:
    ro: bool = False
    allow_other: bool = False
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    cache_dir: str | None = None
    state_dir: str | None = None
    cache_size: int | None = None
    metadata_ttl: float | None = None
    poll_interval: float | None = None  # None: as the config says
    poll_off: bool = False  # -o poll_interval=off
    read_ahead: int = 32 << 20
    # HEADs in flight per content host, for the sizes of a directory (view/sizes.py). Content
    # hosts are CDNs: at a 40 ms round trip, 8 at once made `ls -l` of 10,000 files take 56 s,
    # 256 take 4-6 s. A rate-limited API host is still paced by its budget.
    heads_at_once: int = 256
    # Files whose first block is fetched ahead once a second file of their directory is
    # opened (read/firstblocks.py; 0: off): 40 photos 8 at a time are 5 rounds, these 1-2.
    first_blocks_ahead: int = 32
    timeout: float = 30.0
    block_size: int = 1 << 20
    debug: bool = False
    noxattr: bool = False  # answer no xattr question: fast `ls -l` of huge directories, no user.assetfs.*
    write_back: float | None = None  # seconds after a file's last close before its upload (None: the config's)
    thumbnails: bool = False  # fill the thumbnail cache from the providers' renditions (or [thumbnails] enable)
    metrics: str | None = None  # HOST:PORT of the Prometheus endpoint, or "off" (None: as the config says)
    fuse: set[str] = field(default_factory=set)

    def metrics_listen(self, configured: str | None) -> str | None:
        """Where /metrics is served: this option's address, else the config's; None: nowhere."""
        listen = self.metrics or configured
        return None if listen is None or listen.lower() == "off" else listen

    def poll_every(self, configured: float | None) -> float | None:
        """Seconds between two polls for changes: this option's, else the config's; None: off."""
        return None if self.poll_off else (self.poll_interval or configured)

    def kernel_options(self) -> set[str]:
        opts = {"fsname=assetfs", "subtype=assetfs", "default_permissions", "noatime", *self.fuse}
        if self.allow_other:
            opts.add("allow_other")
        if self.ro:
            opts.add("ro")
        return opts


_PARSERS: dict[str, Callable[[str], object]] = {
    "uid": int,
    "gid": int,
    "umask": lambda v: int(v, 8),
    "cache_dir": str,
    "state_dir": str,
    "cache_size": parse_size,
    "metadata_ttl": parse_duration,
    "poll_interval": parse_interval,
    "read_ahead": parse_size,
    "heads_at_once": int,
    "first_blocks_ahead": int,
    "timeout": parse_duration,
    "block_size": parse_size,
    "write_back": parse_duration,
    "metrics": checked_listen,
}


def parse_mount_options(specs: list[str] | None) -> MountOptions:
    """Options from one or more `-o a,b=c` strings; an unknown option is an error naming it."""
    opts = MountOptions()
    known = {f.name for f in fields(MountOptions)}
    for spec in specs or []:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            name, eq, value = item.partition("=")
            if name in IGNORED or name.startswith(("x-systemd.", "x-", "comment=")):
                continue
            if name in ("ro", "allow_other", "debug", "noxattr", "thumbnails") and not eq:
                setattr(opts, name, True)
            elif name in _PARSERS and eq:
                try:
                    setattr(opts, name, _PARSERS[name](value))
                    if name == "poll_interval":
                        opts.poll_off = opts.poll_interval is None
                except ValueError as e:
                    raise ConfigError(f"-o {item}: {e}") from None
            elif name in FUSE_PASSTHROUGH and not eq:
                opts.fuse.add(name)
            elif name in known:
                raise ConfigError(f"-o {name}: needs a value ({name}=…)" if not eq else f"-o {name}: takes no value")
            else:
                raise ConfigError(f"-o {name}: unknown mount option")
    if opts.write_back is not None and opts.write_back < 0:
        raise ConfigError("-o write_back: must be 0 (upload at close) or more")
    if opts.heads_at_once < 1:
        raise ConfigError("-o heads_at_once: must be 1 or more")
    if opts.first_blocks_ahead < 0:
        raise ConfigError("-o first_blocks_ahead: must be 0 (off) or more")
    if opts.timeout <= 0:
        raise ConfigError("-o timeout: must be more than 0")
    return opts
