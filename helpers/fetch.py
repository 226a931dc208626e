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
    bounds the whole download, so a server that trickles bytes cannot hold it forever.
    The ``Content-Type`` must start with ``image/``; when it is missing or a generic binary
    type the bytes are sniffed instead. Raises ``InputError`` with the reason otherwise.
    """
    import time

    import requests

    deadline = 4 * float(timeout) if deadline is None else float(deadline)
    t_end = time.monotonic() + deadline
    try:
        resp = requests.get(url, timeout=timeout, stream=True, headers={"User-Agent": _USER_AGENT})
    except requests.exceptions.Timeout:
        raise InputError(
            f"Timed out after {timeout} s fetching {url}; check the address or raise timeout."
        ) from None
    except requests.exceptions.RequestException as e:
        raise InputError(
            f"Could not reach {url} ({type(e).__name__}); check the address and the internet "
            "connection, or upload the file instead."
        ) from None
    with contextlib.closing(resp):
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
