"""`mount.assetfs`: the helper mount(8) runs for fstab lines and systemd .mount units.

    /etc/assetfs/assets.toml  /mnt/assets  fuse.assetfs  _netdev,allow_other,uid=1000  0 0

mount(8) calls `mount.assetfs SPEC DIR [-sfnv] [-o OPTIONS] [-t TYPE]`; SPEC is the config
file. Like `assetfs mount`, it returns once the mount is ready, or fails with the reason.
"""

from __future__ import annotations

import argparse
import sys

from .cli import main as assetfs_main
from .errors import ConfigError
from .options import parse_mount_options


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mount.assetfs", description="mount(8) helper for assetfs")
    parser.add_argument("spec", help="the config file (or 'assetfs' for the default one)")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[], help="mount options")
    parser.add_argument("-t", dest="type", help="fuse.assetfs (ignored)")
    parser.add_argument("-s", dest="sloppy", action="store_true", help="tolerate unknown options")
    parser.add_argument("-f", dest="fake", action="store_true", help="check everything, but do not mount")
    parser.add_argument("-n", dest="no_mtab", action="store_true", help="(no mtab to write; ignored)")
    parser.add_argument("-v", dest="verbose", action="store_true", help="say more")
    parser.add_argument("-N", dest="namespace", help="(mount namespace; not supported)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    options = ",".join(args.options)
    if args.sloppy:
        options = _known_only(options)
    try:
        parse_mount_options([options] if options else [])
    except ConfigError as e:
        print(f"mount.assetfs: {e}", file=sys.stderr)
        return 1
    command = ["mount", args.mountpoint, "--log-level", "DEBUG" if args.verbose else "INFO"]
    if args.spec not in ("assetfs", "none"):
        command += ["--config", args.spec]
    if options:
        command += ["-o", options]
    if args.fake:
        command.append("--check-only")
    return assetfs_main(command)


def _known_only(options: str) -> str:
    """With -s, drop the options assetfs does not know instead of failing on them."""
    kept = []
    for item in filter(None, options.split(",")):
        try:
            parse_mount_options([item])
        except ConfigError:
            print(f"mount.assetfs: ignoring unknown option {item.split('=')[0]!r}", file=sys.stderr)
            continue
        kept.append(item)
    return ",".join(kept)


if __name__ == "__main__":
    sys.exit(main())
