"""Bytes from an http(s) URL, with a timeout, an overall deadline, a byte cap and an "is it an
image" check: what both wings use to read an image the user gave as a URL."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

from helpers.errors import InputError

_USER_AGENT = "Mozilla/5.0 (compatible; helpers-media/0.1)"


def fetch_bytes(
    url: str,
    *,
    timeout: float = 15,
    max_bytes: int = 30_000_000,
    deadline: float | None = None,
) -> bytes:
    """GET ``url`` with a timeout and a byte cap; the response must be an image.

    ``timeout`` bounds each connect / read; ``deadline`` (seconds, default ``4 * timeout``)
    bounds the whole download -- name lookup, connect, headers and body -- so a server that
    trickles its headers or its bytes cannot hold it forever: the download runs on a worker
    thread, and at the deadline its sockets are shut and this call raises.
    The ``Content-Type`` must start with ``image/``; when it is missing or a generic binary
    type the bytes are sniffed instead. Raises ``InputError`` with the reason otherwise.
    """
    import threading
    import time

    deadline = 4 * float(timeout) if deadline is None else float(deadline)
    t_end = time.monotonic() + deadline
    watch = _Watch()
    done: dict[str, object] = {}

    def work() -> None:
        try:
            done["data"] = _download(url, timeout, max_bytes, deadline, t_end, watch)
        except BaseException as e:  # handed to the caller's thread
            done["error"] = e

    worker = threading.Thread(target=work, name="helpers-fetch", daemon=True)
    worker.start()
    try:
        worker.join(max(0.0, t_end - time.monotonic()))
    except BaseException:  # an interrupt: the worker must not read on behind it
        watch.abort()
        raise
    if worker.is_alive():
        answered, got = watch.answered, watch.got  # before the shut socket ends its reads
        watch.abort()  # the worker's blocked read returns; it ends without us
        so_far = f"got {got:,} bytes" if answered else "the server had not answered yet"
        raise InputError(
            f"Downloading {url} took longer than {deadline:g} s ({so_far}); the server is too "
            "slow. Try again, raise the deadline, or download the file and give its path."
        )
    if "error" in done:
        raise done["error"]  # type: ignore[misc]
    return done["data"]  # type: ignore[return-value]


class _Watch:
    """The connections of one download, so another thread can shut them at the deadline."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._conns: list = []
        self.aborted = False
        self.answered = False  # the status line and headers arrived
        self.got = 0  # body bytes so far

    def add(self, conn) -> None:
        with self._lock:
            self._conns.append(conn)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            conns = list(self._conns)
        for conn in conns:
            _shut(conn)

    def check(self, conn) -> None:
        """A connection opened after the deadline is shut at once."""
        if self.aborted:
            _shut(conn)


def _shut(conn) -> None:
    import socket

    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:  # the plain socket's shutdown (an SSL socket's own would first unwrap it)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _session(watch: _Watch):
    """A requests session whose connections are registered with ``watch``."""
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(base):
        class Conn(base):
            def _new_conn(self):
                watch.add(self)
                return super()._new_conn()

            def connect(self):
                super().connect()
                watch.check(self)

        return Conn

    pools = {
        "http": type("Pool", (HTTPConnectionPool,), {"ConnectionCls": watched(HTTPConnection)}),
        "https": type("Pool", (HTTPSConnectionPool,), {"ConnectionCls": watched(HTTPSConnection)}),
    }

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **kwargs):
            manager = super().proxy_manager_for(proxy, **kwargs)
            if isinstance(manager, urllib3.ProxyManager):  # not SOCKS: its own pools
                manager.pool_classes_by_scheme = pools
            return manager

    session = requests.Session()
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


def _download(
    url: str, timeout: float, max_bytes: int, deadline: float, t_end: float, watch: _Watch
) -> bytes:
    import time

    import requests

    session = _session(watch)
    try:
        resp = session.get(url, timeout=timeout, stream=True, headers={"User-Agent": _USER_AGENT})
    except requests.exceptions.Timeout:
        raise InputError(
            f"Timed out after {timeout} s fetching {url}; check the address or raise timeout."
        ) from None
    except requests.exceptions.RequestException as e:
        raise InputError(
            f"Could not reach {url} ({type(e).__name__}); check the address and the internet "
            "connection, or upload the file instead."
        ) from None
    watch.answered = True
    with contextlib.closing(session), contextlib.closing(resp):
        if resp.status_code >= 400:
            raise InputError(
                f"{url} answered HTTP {resp.status_code} {resp.reason or ''}".rstrip()
                + "; check the address (the image may be gone or need a login)."
            )
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        sniff = ctype in ("", "application/octet-stream", "binary/octet-stream")
        if not sniff and not ctype.startswith("image/"):
            raise InputError(
                f"{url} is not an image (Content-Type {ctype!r}); use the direct link to the "
                "image file (right-click the picture -> 'Copy image address')."
            )
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise InputError(
                f"{url} is {int(length):,} bytes, more than max_bytes={max_bytes:,}; "
                "use a smaller image or raise max_bytes."
            )
        buf = bytearray()
        try:
            for chunk in _chunks(resp):
                buf.extend(chunk)
                watch.got = len(buf)
                if time.monotonic() > t_end:
                    raise InputError(
                        f"Downloading {url} took longer than {deadline:g} s (got "
                        f"{len(buf):,} bytes); the server is too slow. Try again, raise the "
                        "deadline, or download the file and give its path."
                    )
                if len(buf) > max_bytes:
                    raise InputError(
                        f"{url} is larger than max_bytes={max_bytes:,}; use a smaller image "
                        "or raise max_bytes."
                    )
        except requests.exceptions.RequestException as e:
            raise InputError(f"Download of {url} failed midway ({type(e).__name__}).") from None
    data = bytes(buf)
    if sniff and not looks_like_image(data):
        raise InputError(
            f"{url} did not return image data (no Content-Type and unknown bytes); "
            "use the direct link to the image file."
        )
    return data


def _chunks(resp) -> Iterator[bytes]:
    """The body in pieces as they arrive: ``read1`` returns after one network read, so the
    caller can check its deadline between reads (``iter_content`` waits for a full chunk)."""
    raw = resp.raw
    if not hasattr(raw, "read1"):  # an older urllib3
        yield from resp.iter_content(chunk_size=1 << 12)
        return
    import requests
    import urllib3

    while True:
        try:
            chunk = raw.read1(1 << 16, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise requests.exceptions.ReadTimeout("read timed out") from None
        except urllib3.exceptions.HTTPError as e:
            raise requests.exceptions.ChunkedEncodingError(str(e)) from None
        if not chunk:
            return
        yield chunk


def looks_like_image(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] > 0
    except (UnidentifiedImageError, OSError, ValueError):
        return False
