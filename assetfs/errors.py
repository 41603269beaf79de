"""One error hierarchy; each error knows its errno. `errno_of` is the one translation point."""

from __future__ import annotations

import errno


class AssetfsError(Exception):
    """Base of the errors the core raises on purpose; `errno` is what a syscall answers."""

    errno = errno.EIO
    #: An answer programs expect and act on (ENOENT, ENODATA, EEXIST …): not worth a log line.
    quiet = False
    #: The HTTP status the provider answered with, where the error is its answer (it said no,
    #: so an upload's answer was not lost); None for every other error.
    http_status: int | None = None


class NotFound(AssetfsError):
    errno = errno.ENOENT
    quiet = True


class Gone(NotFound):
    """The provider says that something the mount asked about by its handle (an asset, the
    folder a thing is made in) does not exist: it was removed elsewhere, and the listing that
    showed it is stale. Where an operation meets one, the FUSE layer lists again what the
    operation touched and tells the kernel, so the next look shows the provider's truth."""


class AuthFailed(AssetfsError):
    """The provider refused our credentials (after a fresh token was tried)."""

    errno = errno.EACCES


class ProviderError(AssetfsError):
    """The provider failed, answered nonsense, or could not be reached in time."""

    errno = errno.EIO


class ChecksumMismatch(ProviderError):
    """Downloaded bytes do not match the checksum the provider published."""


class ReadOnly(AssetfsError):
    errno = errno.EROFS


class NotPermitted(AssetfsError):
    errno = errno.EPERM


class NotSupported(AssetfsError):
    errno = errno.ENOTSUP


class IsADirectory(AssetfsError):
    errno = errno.EISDIR


class NotADirectory(AssetfsError):
    errno = errno.ENOTDIR


class NoAttribute(AssetfsError):
    errno = errno.ENODATA
    quiet = True


class NotAnAttributeNamespace(AssetfsError):
    """A name outside `user.` (security.selinux, system.posix_acl_*): EOPNOTSUPP tells
    `ls -l` that this file system has none of them, so it stops asking for every file."""

    errno = errno.EOPNOTSUPP
    quiet = True


class XattrsOff(AssetfsError):
    """Extended attributes were switched off (-o noxattr): ENOSYS makes the kernel stop
    asking for good, so `ls -l` no longer costs three round trips per file."""

    errno = errno.ENOSYS
    quiet = True


class ConfigError(Exception):
    """A problem with the configuration file, phrased for the person who wrote it."""


def errno_of(exc: BaseException) -> int:
    """The errno a syscall answers for an exception; anything unexpected is EIO."""
    if isinstance(exc, AssetfsError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO


class InvalidArgument(AssetfsError):
    errno = errno.EINVAL


class DirectoryNotEmpty(AssetfsError):
    errno = errno.ENOTEMPTY


class CrossDevice(AssetfsError):
    """A move between accounts: `mv` copies and deletes instead."""

    errno = errno.EXDEV


class AlreadyExists(AssetfsError):
    errno = errno.EEXIST
    quiet = True


class NameTooLong(AssetfsError):
    errno = errno.ENAMETOOLONG
