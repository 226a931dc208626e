"""Video out (browser-playable H.264, quiet) and URL downloads with a whole-download deadline."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

from helpers.errors import InputError
from helpers.textseg import media


@pytest.mark.parametrize("size", [(48, 64), (33, 47)])
def test_write_video_is_h264_yuv420p(size, tmp_path, capfd):
    av = pytest.importorskip("av")
    h, w = size
    frames = [np.full((h, w, 3), 20 * i, np.uint8) for i in range(8)]
    path = media.write_video(frames, tmp_path / "clip.mp4", fps=12)
    err = capfd.readouterr().err
    assert "Failed" not in err and "VideoWriter" not in err, err
    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (w + w % 2, h + h % 2)  # even sizes
        decoded = [f.to_ndarray(format="rgb24") for f in box.decode(stream)]
    assert len(decoded) == 8
    assert abs(int(decoded[5][:h, :w].mean()) - 100) <= 3
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_write_video_opencv_fallback_is_quiet(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(media, "h264_available", lambda: False)
    monkeypatch.setattr(media, "_CODEC_OK", None)
    frames = [np.zeros((32, 32, 3), np.uint8)] * 3
    path = media.write_video(frames, tmp_path / "clip.mp4", fps=5)
    assert path.stat().st_size > 0
    err = capfd.readouterr().err
    assert "Failed to initialize" not in err and "could not find encoder" not in err.lower(), err


class _Trickle(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        t_end = time.monotonic() + 6  # bounded: the server gives up after 6 s
        try:
            while time.monotonic() < t_end:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client hung up, as it should
            pass

    def log_message(self, *args):
        pass


def test_url_that_trickles_hits_the_deadline():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow.png"
        t0 = time.monotonic()
        with pytest.raises(InputError, match="longer than 1"):
            media.fetch_bytes(url, timeout=1, deadline=1.0)  # each read arrives within 1 s
        assert time.monotonic() - t0 < 3
        with pytest.raises(InputError, match="longer than"):
            media.load_image(url, timeout=0.5)  # the default deadline: 4 x timeout
        assert time.monotonic() - t0 < 6
    finally:
        server.shutdown()
        server.server_close()


def test_track_run_prints_no_encoder_messages(tmp_path, capfd):
    from helpers import cli
    from tests.textseg.test_cli_segment import FAST

    frames = [np.full((40, 56, 3), (90, 160, 80), np.uint8) for _ in range(4)]
    video = media.write_video(frames, tmp_path / "in.mp4", fps=5)
    argv = ["track", "--video", video, "--prompt", "ball", "--out", tmp_path / "t", *FAST]
    code = cli.main([*map(str, argv), "--detect-every", "2", "--max-objects", "1"])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert "Failed" not in captured.err and "VideoWriter" not in captured.err, captured.err
    out = json.loads(captured.out.strip().splitlines()[-1])
    import av

    with av.open(out["video_path"]) as box:
        assert box.streams.video[0].codec_context.name == "h264"
