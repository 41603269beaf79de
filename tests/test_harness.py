"""The test harness itself: tests that mount skip with the reason where FUSE is missing, and
an unexpected traceback in a mount's or emulator's log fails the test that caused it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from logcheck import incidents

TESTS = Path(__file__).parent


def run_pytest(tmp_path: Path, source: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a small test module with this suite's conftest (copied beside it), in a fresh pytest."""
    for helper in ("conftest.py", "logcheck.py", "mounting.py", "pending.py"):
        (tmp_path / helper).write_text((TESTS / helper).read_text())
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


def test_mount_tests_skip_with_the_reason_where_fuse_is_missing(tmp_path):
    done = run_pytest(
        tmp_path,
        """
        import pytest

        @pytest.mark.mount
        def test_marked():
            raise AssertionError("ran without FUSE")

        def test_by_fixture(mount):
            raise AssertionError("ran without FUSE")

        def test_without_fuse():
            pass
        """,
        env={"ASSETFS_TEST_FUSE_DEVICE": str(tmp_path / "no-fuse")},
    )
    assert "1 passed, 2 skipped" in done.stdout, done.stdout + done.stderr
    assert f"needs a real FUSE mount: {tmp_path / 'no-fuse'} is missing" in done.stdout


def test_a_traceback_in_a_log_fails_the_test_unless_it_is_expected(tmp_path):
    done = run_pytest(
        tmp_path,
        """
        import logcheck
        import pytest

        def crash(log):
            logcheck.watch(log)
            log.write_text(
                "INFO mounted\\n"
                "ERROR read failed unexpectedly; answering EIO\\n"
                "Traceback (most recent call last):\\n"
                '  File "x.py", line 1, in read\\n'
                "ZeroDivisionError: division by zero\\n"
                "INFO unmounted\\n"
            )

        def test_surprised(tmp_path):
            crash(tmp_path / "mount.log")

        @pytest.mark.log_expects(r"ZeroDivisionError")
        def test_expected(tmp_path):
            crash(tmp_path / "mount.log")

        @pytest.mark.log_expects(r"KeyError")
        def test_expected_something_else(tmp_path):
            crash(tmp_path / "mount.log")
        """,
    )
    # a test that fails its log check passed its body and errs at teardown: counted in both
    assert "3 passed, 2 errors" in done.stdout, done.stdout + done.stderr
    assert "ERROR at teardown of test_surprised" in done.stdout
    assert "ERROR at teardown of test_expected_something_else" in done.stdout
    assert "ERROR at teardown of test_expected " not in done.stdout
    assert "ZeroDivisionError: division by zero" in done.stdout


def test_an_incident_is_its_line_and_its_traceback():
    log = (
        "12:00 INFO assetfs.mount: mounted /m\n"
        "12:01 ERROR assetfs.fuse: read failed unexpectedly; answering EIO\n"
        "Traceback (most recent call last):\n"
        '  File "reader.py", line 9, in read\n'
        "    data = block[offset]\n"
        "IndexError: index out of range\n"
        "12:02 WARNING assetfs.fuse: lookup: not found\n"
        "Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in route\n'
        "KeyError: 'id'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "server.py", line 5\n'
        "RuntimeError: second\n"
        "12:03 INFO assetfs.mount: unmounted /m\n"
    )
    first, second = incidents(log)
    assert first.startswith("12:01 ERROR") and first.endswith("IndexError: index out of range")
    assert second.startswith("Traceback") and "KeyError: 'id'" in second and second.endswith("RuntimeError: second")
    assert incidents("12:00 INFO mounted\n12:01 WARNING slow answer\n") == []


def test_an_emulators_side_of_a_hung_up_client_is_no_finding_but_its_own_errors_are(tmp_path):
    import logcheck

    log = tmp_path / "emulator.log"
    log.write_text(
        "Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        '  File "requests.py", line 252, in stream\n'
        "starlette.requests.ClientDisconnect\n"
        "Exception in ASGI application\n"
        "Traceback (most recent call last):\n"
        '  File "spectrum.py", line 40, in list_assets\n'
        "KeyError: 'page'\n"
    )
    logcheck.watch(log, benign=logcheck.EMULATOR_SIDE)
    logcheck.stopped(log)
    found = [incident for where, incident in logcheck.surprises([]) if where == log]
    assert len(found) == 1 and found[0].endswith("KeyError: 'page'"), found
