"""The `assetfs` command: one subcommand per thing a user does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .units import parse_duration, parse_size


def _emulator(args: argparse.Namespace) -> int:
    from .emulator.app import Emulator
    from .emulator.blobs import BlobStore
    from .emulator.server import serve
    from .emulator.tokens import TokenIssuer

    emu = Emulator(
        extra_assets=args.assets,
        large_file_size=parse_size(args.large_file) if args.large_file else 0,
        tokens=TokenIssuer(ttl=parse_duration(args.token_ttl) if args.token_ttl else None),
        blobs=BlobStore(Path(args.data_dir) if args.data_dir else None),
        url_ttl=parse_duration(args.signed_url_ttl) if args.signed_url_ttl else None,
        content_base_url=args.content_base_url,
    )
    emu.faults.update(
        {
            k: v
            for k, v in {
                "latency": args.latency,
                "fail_status": args.fail_status,
                "fail_count": args.fail_count,
                "retry_after": args.retry_after,
            }.items()
            if v is not None
        }
    )
    for spec in args.rate_limit or []:
        provider, _, rate = spec.partition("=")
        limit, _, window = rate.partition("/")
        emu.rate_limit(provider).limit = int(limit)
        emu.rate_limit(provider).window = parse_duration(window or "60s")
    try:
        serve(emu, args.host, args.port, Path(args.write_config) if args.write_config else None, quiet=args.quiet)
    except KeyboardInterrupt:
        pass
    return 0


def _mount(args: argparse.Namespace) -> int:
    from .config import load_config
    from .daemon import run_in_background
    from .errors import ConfigError
    from .logs import setup_logging
    from .mount import Mount
    from .options import parse_mount_options

    setup_logging(args.log_level)
    try:
        options = parse_mount_options(args.o)
        config = load_config(args.config)
    except ConfigError as e:
        print(f"assetfs: {e}", file=sys.stderr)
        return 2
    if options.debug:
        setup_logging("DEBUG")
        args.log_level = "DEBUG"
    mountpoint = Path(args.mountpoint)
    if not mountpoint.is_dir():
        print(f"assetfs: {mountpoint}: not a directory", file=sys.stderr)
        return 2
    if args.check_only:
        print(f"assetfs: {args.config or 'the config'} and the options are valid; not mounting (-f)")
        return 0
    if not args.foreground:
        again = ["mount", str(mountpoint.resolve()), "--foreground", "--log-level", args.log_level]
        again += ["--config", str(Path(args.config).resolve())] if args.config else []
        again += [item for o in args.o or [] for item in ("-o", o)]
        return run_in_background(again, mountpoint, Path(config.cache.path))
    import trio

    from .daemon import notify_ready
    from .state import StateInUse

    try:
        mount = Mount(config, mountpoint, options)
    except StateInUse as e:
        print(f"assetfs: {e}", file=sys.stderr)
        return 1
    trio.run(mount.run, notify_ready)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .logs import setup_logging
    from .options import parse_mount_options

    setup_logging(args.log_level)
    return run_demo(args.mountpoint, parse_mount_options(args.o))


def _command(module: str):
    """Run `assetfs.commands.<module>.run(args)`, imported only when that command is used
    (rich and the providers are not needed to start the emulator or a mount)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(f".commands.{module}", __package__).run(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assetfs", description="Mount digital-asset-management APIs as a drive.")
    sub = parser.add_subparsers(dest="command", required=True)

    emu = sub.add_parser("emulator", help="serve the four provider APIs locally, with sample data")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8765, help="0 picks a free port (default 8765)")
    emu.add_argument("--assets", type=int, default=0, metavar="N", help="add N generated assets per organization")
    emu.add_argument(
        "--large-file", metavar="SIZE", help="add one asset of SIZE (e.g. 512MiB) per provider, kept on disk"
    )
    emu.add_argument("--write-config", metavar="FILE", help="write an assetfs config for this emulator to FILE")
    emu.add_argument(
        "--data-dir", metavar="DIR", help="where uploads and large files are kept (default: a temporary dir)"
    )
    emu.add_argument("--token-ttl", metavar="DURATION", help="lifetime of every issued token (default: as documented)")
    emu.add_argument(
        "--signed-url-ttl", metavar="DURATION", help="lifetime of signed content URLs (default: they never expire)"
    )
    emu.add_argument("--latency", type=float, metavar="SECONDS", help="fault: delay every answer")
    emu.add_argument("--fail-status", type=int, metavar="STATUS", help="fault: answer this HTTP status …")
    emu.add_argument("--fail-count", type=int, metavar="N", help="… to the next N requests (-1: always)")
    emu.add_argument("--retry-after", type=int, metavar="SECONDS", help="fault: Retry-After sent with --fail-status")
    emu.add_argument(
        "--rate-limit",
        action="append",
        metavar="PROVIDER=N/WINDOW",
        help="switch on a provider's rate limiting, e.g. spectrum=100/60s (repeatable)",
    )
    emu.add_argument(
        "--content-base-url",
        metavar="URL",
        help="benchmark/test option: link files kept in --data-dir (large files, uploads) as URL/<file>/<name>,"
        " for a web server over that dir to serve (the last part is cosmetic)",
    )
    emu.add_argument("--quiet", action="store_true", help="print only the base URL")
    emu.set_defaults(func=_emulator)

    mount = sub.add_parser("mount", help="mount the configured accounts at MOUNTPOINT")
    mount.add_argument("mountpoint")
    mount.add_argument("--config", metavar="FILE", help="config file (default: ~/.config/assetfs/config.toml)")
    mount.add_argument(
        "-f", "--foreground", action="store_true", help="stay in the foreground (default: return once mounted)"
    )
    mount.add_argument(
        "-o", action="append", metavar="OPTIONS", help="mount options, e.g. -o ro,uid=1000,metadata_ttl=5m"
    )
    mount.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    mount.add_argument("--check-only", action="store_true", help=argparse.SUPPRESS)
    mount.set_defaults(func=_mount)

    demo = sub.add_parser("demo", help="mount the emulator's sample assets, with a short tour")
    demo.add_argument("mountpoint", nargs="?", help="where to mount (default: a temporary directory)")
    demo.add_argument("-o", action="append", metavar="OPTIONS", help="mount options")
    demo.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    demo.set_defaults(func=_demo)

    status = sub.add_parser("status", help="what a mount is doing: requests, cache hits, bytes, pending uploads")
    status.add_argument("mountpoint")
    status.add_argument("--json", action="store_true", help="print .assetfs/status.json as it is")
    status.set_defaults(func=_command("status"))

    umount = sub.add_parser("umount", help="wait for pending uploads, then unmount")
    umount.add_argument("mountpoint")
    umount.add_argument(
        "--lazy",
        action="store_true",
        help="do not wait; detach now and let the mount go once nothing uses it (fusermount3 -uz)",
    )
    umount.add_argument(
        "--timeout",
        default="300",
        metavar="SECONDS",
        help="give up waiting for uploads after this long, without unmounting (default 300)",
    )
    umount.set_defaults(func=_command("umount"))

    prefetch = sub.add_parser("prefetch", help="read files through a mount so their bytes are in the block cache")
    prefetch.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files or directories inside a mount (hidden entries are skipped unless named)",
    )
    prefetch.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel readers (default 4)")
    prefetch.set_defaults(func=_command("prefetch"))

    thumbs = sub.add_parser(
        "thumbnails", help="fill the thumbnail cache for the pictures under PATHs from the providers' renditions"
    )
    thumbs.add_argument("paths", nargs="+", metavar="PATH", help="files or directories inside a mount")
    thumbs.add_argument("-j", "--jobs", type=int, default=16, metavar="N", help="pictures at once (default 16)")
    thumbs.add_argument("--dir", metavar="DIR", help="this thumbnail cache (default: $XDG_CACHE_HOME/thumbnails)")
    thumbs.set_defaults(func=_command("thumbnails"))

    refresh = sub.add_parser("refresh", help="list directories of a mount afresh now (changes made elsewhere)")
    refresh.add_argument("paths", nargs="+", metavar="PATH", help="directories inside a mount")
    refresh.set_defaults(func=_command("refresh"))

    cache_options = argparse.ArgumentParser(add_help=False)
    cache_options.add_argument(
        "--config", metavar="FILE", help="config file whose cache dir is meant (default: ~/.config/assetfs/config.toml)"
    )
    cache_options.add_argument("--cache-dir", metavar="DIR", help="this cache dir instead (as -o cache_dir=DIR)")
    cache_options.add_argument("--state-dir", metavar="DIR", help="this state dir instead (as -o state_dir=DIR)")
    cache = sub.add_parser("cache", help="the cache dir: sizes, or empty what can be fetched again")
    cache_sub = cache.add_subparsers(dest="action", required=True)
    cache_sub.add_parser("info", parents=[cache_options], help="size of each part and pending uploads")
    cache_sub.add_parser(
        "clear", parents=[cache_options], help="empty metadata/ and blocks/ (written bytes and upload state are kept)"
    )
    cache.set_defaults(func=_command("cache"))

    config = sub.add_parser("config", help="the config file")
    config_sub = config.add_subparsers(dest="action", required=True)
    check = config_sub.add_parser("check", help="validate it and try every account's credentials")
    check.add_argument("--config", metavar="FILE", help="config file (default: ~/.config/assetfs/config.toml)")
    check.add_argument("--timeout", default="20", metavar="SECONDS", help="per account (default 20)")
    check.set_defaults(func=_command("check"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from .commands import CommandError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as e:
        print(f"assetfs: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
