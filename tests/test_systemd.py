"""The systemd units in systemd/ (checked by `systemd-analyze verify` and against the CLI),
and the notify protocol a Type=notify service relies on, spoken by a real mount."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import tomli_w
from mounting import is_mounted, unmount

UNITS = Path(__file__).parent.parent / "systemd"
SERVICE = "assetfs@.service"
MOUNT_UNITS = ["mnt-assets.mount", "mnt-assets.automount"]
INSTALLED_ASSETFS = "/usr/local/bin/assetfs"
# Settings that give a unit's processes a mount namespace of their own: a FUSE mount made
# inside it would be invisible to the rest of the system.
NAMESPACING = [
    "PrivateMounts",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectSystem",
    "ProtectHome",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "RootDirectory",
    "RootImage",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "MountAPIVFS",
    "DynamicUser",
    "PrivateUsers",
    "MountFlags",
    "LogNamespace",
]


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}} of a unit file (continuation lines joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# --- systemd-analyze verify --------------------------------------------------------------


def verify(unit_dir: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"./{name}"],
        cwd=unit_dir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # systemd-analyze also loads the host's units and may grumble about them; only what it
    # says about ours counts. A template is verified as an instance (assetfs@i.service).
    stem = name.split("@")[0] + "@" if "@" in name else name
    ours = [line for line in (result.stdout + result.stderr).splitlines() if stem in line or str(unit_dir) in line]
    assert result.returncode == 0, f"systemd-analyze verify {name} failed:\n{result.stderr}"
    assert not ours, f"systemd-analyze verify {name} complained:\n" + "\n".join(ours)


def test_service_unit_verifies(tmp_path):
    # verify checks that every command exists: point ExecStart at this virtualenv's assetfs.
    assetfs = Path(sys.executable).parent / "assetfs"
    assert assetfs.exists(), f"{assetfs}: the assetfs script of the test virtualenv is missing"
    text = (UNITS / SERVICE).read_text()
    assert INSTALLED_ASSETFS in text
    (tmp_path / SERVICE).write_text(text.replace(INSTALLED_ASSETFS, str(assetfs)))
    verify(tmp_path, SERVICE)


@pytest.mark.parametrize("name", MOUNT_UNITS)
def test_mount_units_verify(tmp_path, name):
    # Both must be named after their Where= (verify refuses the unit otherwise); verified
    # together so the automount finds the mount unit it triggers.
    for unit in MOUNT_UNITS:
        shutil.copy(UNITS / unit, tmp_path / unit)
    verify(tmp_path, name)


# --- what the units say, checked against the code ------------------------------------------


def test_service_is_notify_and_stops_gracefully():
    service = unit_settings(UNITS / SERVICE)["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]  # the datagrams must come from the main PID
    assert service["KillMode"][-1] in ("mixed", "main")
    assert service.get("KillSignal", ["SIGTERM"])[-1] == "SIGTERM"
    assert service["TimeoutStopSec"] == ["15min"]
    assert service["Restart"] == ["on-failure"]
    assert service["CacheDirectory"] == ["assetfs/%i"]
    assert service["StateDirectory"] == ["assetfs/%i"]  # never cleaned with the cache
    assert service["DeviceAllow"] == ["/dev/fuse rw"]
    assert "CAP_SYS_ADMIN" in service["CapabilityBoundingSet"][-1]


@pytest.mark.parametrize("name", [SERVICE, *MOUNT_UNITS])
def test_no_private_mount_namespace(name):
    settings = {key for section in unit_settings(UNITS / name).values() for key in section}
    assert not settings & set(NAMESPACING), f"{name}: these would hide the mount from the system"


def test_service_command_line_parses():
    """ExecStart, with the unit's own Environment= and specifiers filled in, is a command
    line `assetfs` accepts (options included)."""
    from assetfs.cli import build_parser
    from assetfs.options import parse_mount_options

    service = unit_settings(UNITS / SERVICE)["Service"]
    env = dict(value.split("=", 1) for value in service["Environment"])
    specifiers = {"%i": "assets", "%C": "/var/cache", "%S": "/var/lib", "%%": "%"}

    def expand(text: str) -> str:
        text = re.sub(r"%[iCS%]", lambda m: specifiers[m.group()], text)
        return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], text)

    env = {k: expand(v) for k, v in env.items()}
    argv = shlex.split(expand(service["ExecStart"][-1]))
    assert argv[0] == INSTALLED_ASSETFS
    args = build_parser().parse_args(argv[1:])
    assert args.command == "mount" and args.foreground
    assert args.config == "/etc/assetfs/assets.toml"
    assert args.mountpoint == "/mnt/assets"
    options = parse_mount_options(args.o)
    assert options.cache_dir == "/var/cache/assetfs/assets"
    assert options.state_dir == "/var/lib/assetfs/assets"
    assert options.allow_other
    # The mountpoint made before the start is the one mounted.
    pre = [shlex.split(expand(cmd.lstrip("-"))) for cmd in service["ExecStartPre"]]
    assert ["/bin/mkdir", "-p", "/mnt/assets"] in pre


def test_mount_unit_matches_automount():
    mount = unit_settings(UNITS / "mnt-assets.mount")["Mount"]
    automount = unit_settings(UNITS / "mnt-assets.automount")["Automount"]
    assert mount["Where"] == automount["Where"] == ["/mnt/assets"]
    assert mount["What"] == ["/etc/assetfs/assets.toml"]
    assert mount["Type"] == ["fuse.assetfs"]
    assert set(mount["Options"][-1].split(",")) >= {"_netdev", "allow_other"}
    assert automount["TimeoutIdleSec"]
    # Every option in Options= is one `assetfs mount -o` accepts.
    from assetfs.options import parse_mount_options

    parse_mount_options(mount["Options"])


# --- the notify protocol, from a real mount ---------------------------------------------------


class NotifyListener:
    """The service manager's end of $NOTIFY_SOCKET: datagrams with the sender's PID."""

    def __init__(self, directory: Path):
        path = directory / "notify.sock"
        if len(str(path)) > 100:  # sun_path holds 108 bytes
            self._tmpdir = tempfile.mkdtemp(prefix="assetfs-notify-")
            path = Path(self._tmpdir) / "notify.sock"
        else:
            self._tmpdir = None
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.received: list[tuple[int | None, dict[str, str]]] = []

    def receive(self, timeout: float) -> tuple[int | None, dict[str, str]] | None:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("iII")))
        except TimeoutError:
            return None
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[: struct.calcsize("iII")])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.received.append((pid, fields))
        return pid, fields

    def wait_for(self, key: str, process: subprocess.Popen, limit: float) -> tuple[int | None, dict[str, str]]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            message = self.receive(0.2)
            if message and key in message[1]:
                return message
            if message is None and process.poll() is not None:
                # One last look: the datagram may have been sent just before the exit.
                while (message := self.receive(0.05)) is not None:
                    if key in message[1]:
                        return message
                raise AssertionError(
                    f"the mount exited ({process.returncode}) without sending {key}; received {self.received}"
                )
        raise AssertionError(f"no {key} within {limit} s; received {self.received}")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


@pytest.mark.mount
def test_notify_ready_status_stopping(emu, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    doc = {
        "cache": dict(emu.config.get("cache", {})),
        "accounts": {k: v for k, v in emu.config["accounts"].items() if k == "carhartt"},
    }
    doc["cache"]["dir"] = str(tmp_path / "cache")
    doc["state"] = {"dir": str(tmp_path / "state")}
    config = tmp_path / "assetfs.toml"
    config.write_text(tomli_w.dumps(doc))
    log_path = tmp_path / "mount.log"
    listener = NotifyListener(tmp_path)
    with open(log_path, "wb") as log:
        process = None
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "assetfs", "mount", "-f", "--config", str(config), str(mnt)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NOTIFY_SOCKET": str(listener.path)},
            )
            pid, ready = listener.wait_for("READY", process, 30)
            assert ready["READY"] == "1"
            assert is_mounted(mnt), "READY=1 came before the mount was up"
            # NotifyAccess=main: systemd only listens to the process it started.
            assert pid == process.pid, f"READY=1 sent by PID {pid}, not the main process {process.pid}"
            assert "carhartt" in os.listdir(mnt)

            if not any("STATUS" in fields for _, fields in listener.received):
                listener.wait_for("STATUS", process, 5)
            statuses = [fields["STATUS"] for _, fields in listener.received if "STATUS" in fields]
            assert all(statuses), f"empty STATUS= line: {listener.received}"

            process.send_signal(signal.SIGTERM)
            pid, stopping = listener.wait_for("STOPPING", process, 30)
            assert stopping["STOPPING"] == "1"
            assert pid == process.pid
            assert process.wait(30) == 0, log_path.read_text(errors="replace")
            assert not is_mounted(mnt), "the mount is still there after the process exited"
        except BaseException:
            log.flush()
            print(log_path.read_text(errors="replace"))
            raise
        finally:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            unmount(mnt)
            listener.close()
