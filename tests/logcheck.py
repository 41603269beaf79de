"""After every test, the logs of the mounts and emulators it ran are read: a traceback or a
"failed unexpectedly" line fails the test (as S3QL fails tests on unexpected warnings),
unless the test says it expects it with `@pytest.mark.log_expects(r"regex", …)`, matched
against the whole incident (the line and its traceback, through the exception's own line).

Mounts and emulators `watch()` their log files; each check reads what was written since the
last one, so a shared emulator's incident is charged to the test during which it happened.
An emulator's log may say which of its incidents are no finding (`EMULATOR_SIDE`)."""

from __future__ import annotations

import re
from pathlib import Path

SURPRISE = re.compile(r"Traceback \(most recent call last\)|failed unexpectedly")
# lines that continue a traceback before the exception's own line
CONTINUED = ("Traceback (most recent call last)", "During handling of the above exception", "The above exception")

# The emulator's side of what a test does on purpose, not a fault of the mount: a client that
# hung up mid-request (an upload given up, a process killed) and the faults a test switched on.
EMULATOR_SIDE = (
    r"starlette\.requests\.ClientDisconnect",
    r"emulator\.faults\.\w+: emulated ",
    r"RuntimeError: Response content shorter than Content-Length",  # the truncate_body fault
)

_read_up_to: dict[Path, int] = {}  # a watched log → how far it was checked
_benign: dict[Path, tuple[str, ...]] = {}  # a watched log → the incidents in it that are no finding
_stopped: set[Path] = set()  # logs of mounts and emulators stopped: forgotten once checked


def watch(log: Path, benign: tuple[str, ...] = ()) -> None:
    _read_up_to.setdefault(log, 0)
    _benign[log] = benign


def stopped(log: Path) -> None:
    _stopped.add(log)


def incidents(text: str) -> list[str]:
    """Each surprising line with the traceback that follows it."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        if not SURPRISE.search(lines[i]):
            i += 1
            continue
        j, in_traceback = i + 1, "Traceback" in lines[i]
        while j < len(lines):
            line = lines[j]
            if not line.strip() or line[0].isspace():
                j += 1
            elif line.startswith(CONTINUED):
                in_traceback = True
                j += 1
            elif in_traceback:  # the exception's own line ends the traceback, unless a chained one follows
                j += 1
                after = next((k for k in range(j, len(lines)) if lines[k].strip()), len(lines))
                if after == len(lines) or not lines[after].startswith(CONTINUED):
                    break
                j = after
            else:
                break
        found.append("\n".join(lines[i:j]))
        i = max(j, i + 1)
    return found


def surprises(expected: list[str]) -> list[tuple[Path, str]]:
    """The incidents written since the last check that no `expected` regex matches."""
    unexpected = []
    for log, offset in list(_read_up_to.items()):
        try:
            with open(log, "rb") as f:
                f.seek(offset)
                new = f.read()
        except FileNotFoundError:
            new = b""
        _read_up_to[log] = offset + len(new)
        allowed = [*expected, *_benign.get(log, ())]
        for incident in incidents(new.decode(errors="replace")):
            if not any(re.search(pattern, incident) for pattern in allowed):
                unexpected.append((log, incident))
        if log in _stopped:
            del _read_up_to[log]
            _benign.pop(log, None)
            _stopped.discard(log)
    return unexpected
