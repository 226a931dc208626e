"""helpers.fetch: the deadline covers the whole download -- connect, headers and body."""

from __future__ import annotations

import http.server
import io
import threading
import time

import pytest
from PIL import Image

from helpers import fetch
from helpers.errors import InputError

DRIP_S = 60  # what a dripping server would hold a download for without the deadline


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


class _Server:
    """A local server on a thread; ``hung_up`` is set once a dripping handler's client left."""

    def __init__(self, handler):
        self.hung_up = threading.Event()
        outer = self

        class Handler(handler):
            server_state = outer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/x.png"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    server_state: _Server

    def log_message(self, *args):
        pass

    def _drip(self, head: bytes, drip: bytes):
        """``head`` at once, then ``drip`` a byte every 0.1 s for up to DRIP_S seconds."""
        t_end = time.monotonic() + DRIP_S
        try:
            self.wfile.write(head)
            self.wfile.flush()
            while time.monotonic() < t_end:
                for b in drip:
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.1)
        except OSError:  # the client hung up, as it should
            self.server_state.hung_up.set()
        self.close_connection = True


class _DripsHeaders(_Quiet):
    def do_GET(self):  # noqa: N802
        # a status line, then one header that never ends: requests waits for the blank line
        self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Slow: ", b"abcdefgh")


class _DripsStatusLine(_Quiet):
    def do_GET(self):  # noqa: N802
        self._drip(b"HTTP/1.1 2", b"0")


class _Good(_Quiet):
    def do_GET(self):  # noqa: N802
        body = _png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "helpers-fetch" and t.is_alive()]


def _wait_for(cond, limit=30.0) -> bool:
    t_end = time.monotonic() + limit
    while time.monotonic() < t_end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("handler", [_DripsHeaders, _DripsStatusLine])
def test_a_server_that_drips_its_headers_meets_the_deadline(handler):
    server = _Server(handler)
    try:
        # each byte comes well within the 5 s read timeout; only the 1 s deadline can stop it
        with pytest.raises(InputError) as info:
            fetch.fetch_bytes(server.url, timeout=5, deadline=1.0)
        msg = str(info.value)
        assert "longer than 1 s" in msg and "had not answered" in msg, msg
        assert "\n" not in msg
        # the download's socket was shut: the server sees its client go, the worker ends
        assert server.hung_up.wait(30)
        assert _wait_for(lambda: not _fetch_threads())
    finally:
        server.close()


def test_a_dripping_server_through_load_image_is_one_input_error():
    from helpers.textseg import media

    server = _Server(_DripsHeaders)
    try:
        with pytest.raises(InputError, match="longer than 1 s"):
            media.load_image(server.url, timeout=0.25)  # the default deadline: 4 x timeout
    finally:
        server.close()


def test_a_good_server_still_answers_and_leaves_no_thread():
    server = _Server(_Good)
    try:
        assert fetch.fetch_bytes(server.url, timeout=5, deadline=10) == _png()
        assert _wait_for(lambda: not _fetch_threads())
    finally:
        server.close()
