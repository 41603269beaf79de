"""Parts of assetfs that need an optional extra: the emulator (`assetfs[emulator]`) and
fleets (`assetfs[fleet]`). Without it, the part says which extra to install instead of
failing on an import deep inside."""

from __future__ import annotations

from importlib import import_module

EXTRAS = {
    "emulator": ("starlette", "uvicorn", "httptools", "python_multipart", "PIL"),  # PIL: pillow
    "fleet": ("coredis", "cryptography"),
}


class MissingExtra(ImportError):
    pass


def require(extra: str) -> None:
    """Raise MissingExtra naming `pip install 'assetfs[extra]'` if a module of it is missing."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            import_module(module)  # imported now or a moment later by the part that needs it
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(
            f"this needs assetfs's optional extra '{extra}' (missing: {', '.join(missing)}): "
            f"pip install 'assetfs[{extra}]'"
        )
