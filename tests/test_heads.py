"""Many HEADs at once through libcurl (read/heads.py), against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assetfs.errors import ConfigError
from assetfs.options import parse_mount_options
from assetfs.providers.http import Unreachable
from assetfs.read.heads import head_sizes


class Listening(ThreadingHTTPServer):
    request_queue_size = 256  # many connections at once are accepted, not dropped and tried again


class Server:
    """Files /f<n> of n bytes; /missing is 404, /broken 500, /moved redirects to /f7; /together<n>
    answers n bytes only once `together` requests are in at the same moment (else 500).
    Records each request's path and Authorization header, and each connection."""

    def __init__(self, together: int = 1):
        self.seen: list[tuple[str, str | None]] = []
        self.together = threading.Barrier(together, timeout=5)
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                server.connections += 1
                super().setup()

            def do_HEAD(self):
                server.seen.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/together"):
                    try:
                        server.together.wait()
                        self.send_response(200)
                        self.send_header("Content-Length", self.path[9:])
                    except threading.BrokenBarrierError:
                        self.send_response(500)
                        self.send_header("Content-Length", "0")
                elif self.path.startswith("/f"):
                    self.send_response(200)
                    self.send_header("Content-Length", self.path[2:])
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/f7")
                    self.send_header("Content-Length", "0")
                else:
                    self.send_response(404 if self.path == "/missing" else 500)
                    self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = Listening(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def ask(
    urls,
    headers=lambda url: ["User-Agent: test"],
    at_once=4,
    timeout=5.0,
    before=lambda url: None,
    stopped=lambda: False,
):
    answers: dict[str, int | None] = {}

    def answer(ended):
        for key, size in ended:
            assert key not in answers, f"{key} answered twice"
            answers[key] = size

    head_sizes(urls, headers=headers, at_once=at_once, timeout=timeout, before=before, answer=answer, stopped=stopped)
    return answers


def test_each_size_once_over_a_few_kept_connections(server):
    urls = [(f"k{n}", f"{server.url}/f{n}") for n in range(300)]
    sent = []
    answers = ask(urls, before=sent.append)
    assert answers == {f"k{n}": n for n in range(300)}
    assert sorted(p for p, _ in server.seen) == sorted(f"/f{n}" for n in range(300))  # each once
    assert sent == [url for _, url in urls]  # in order, each paced
    assert server.connections <= 4  # kept alive, at most at_once


def test_all_at_once_are_in_flight_together():
    s = Server(together=32)
    try:
        answers = ask([(n, f"{s.url}/together{n}") for n in range(64)], at_once=32)
    finally:
        s.stop()
    assert answers == {n: n for n in range(64)}  # each round of 32 met at the server at once
    assert s.connections == 32  # a keep-alive connection each, used twice


def test_a_small_batch_opens_no_more_connections_than_it_has_requests(server):
    assert ask([(n, f"{server.url}/f{n}") for n in range(3)], at_once=256) == {0: 0, 1: 1, 2: 2}
    assert server.connections <= 3


def test_answers_other_than_a_plain_200_are_no_size_and_redirects_are_not_followed(server):
    answers = ask(
        [
            ("a", f"{server.url}/missing"),
            ("b", f"{server.url}/broken"),
            ("c", f"{server.url}/moved"),
            ("d", f"{server.url}/f5"),
        ]
    )
    assert answers == {"a": None, "b": None, "c": None, "d": 5}
    assert "/f7" not in [p for p, _ in server.seen]  # the file's own stat follows it, under the full policy


def test_header_lines_are_the_ones_given_for_each_url(server):
    def headers(url):
        return ["Authorization: Bearer secret"] if url.endswith("/f1") else []

    ask([("one", f"{server.url}/f1"), ("two", f"{server.url}/f2")], headers=headers)
    assert dict(server.seen) == {"/f1": "Bearer secret", "/f2": None}


def test_a_host_that_does_not_answer_ends_the_batch_with_every_request_answered():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        answers: dict = {}
        with pytest.raises(Unreachable) as e:
            head_sizes(
                [(f"k{n}", f"http://127.0.0.1:{port}/f{n}") for n in range(20)],
                headers=lambda url: [],
                at_once=4,
                timeout=5.0,
                before=lambda url: None,
                answer=lambda ended: answers.update(ended),
            )
    assert e.value.url.startswith(f"http://127.0.0.1:{port}/")
    assert answers and all(size is None for size in answers.values())
    assert len(answers) <= 4  # nothing more was sent once the host did not answer


def test_a_host_that_accepts_and_never_answers_is_given_up_at_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        started = time.monotonic()
        answers: dict = {}
        with pytest.raises(Unreachable):
            head_sizes(
                [("k", f"http://127.0.0.1:{port}/f1")],
                headers=lambda url: [],
                at_once=2,
                timeout=0.5,
                before=lambda url: None,
                answer=lambda ended: answers.update(ended),
            )
        assert time.monotonic() - started < 3
        assert answers == {"k": None}


def test_stopping_sends_nothing_more(server):
    sent = []
    ask(
        [(f"k{n}", f"{server.url}/f{n}") for n in range(100)],
        at_once=2,
        before=sent.append,
        stopped=lambda: len(sent) >= 10,
    )
    assert len(server.seen) == 10


def test_the_number_in_flight_is_a_mount_option():
    assert parse_mount_options(None).heads_at_once == 256
    assert parse_mount_options(["ro,heads_at_once=32"]).heads_at_once == 32
    for bad in ("heads_at_once=0", "heads_at_once=many", "heads_at_once"):
        with pytest.raises(ConfigError, match="heads_at_once"):
            parse_mount_options([bad])
