"""helpers.textseg.media: every input kind, every PIL mode, bad inputs, big images, videos."""

import http.server
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from helpers.errors import InputError
from helpers.textseg import media


def _png_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _noise(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- local web server

IMG = _png_bytes(Image.new("RGB", (32, 24), (10, 20, 30)))
BIG = b"\xff\xd8\xff" + b"\0" * 2_000_000


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, body, ctype=None, length=True):
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        routes = {
            "/img.png": (200, IMG, "image/png", True),
            "/noctype": (200, IMG, None, True),
            "/octet": (200, IMG, "application/octet-stream", True),
            "/page.html": (200, b"<html><body>hi</body></html>", "text/html; charset=utf-8", True),
            "/text-noctype": (200, b"just some text, not an image", None, True),
            "/huge.jpg": (200, BIG, "image/jpeg", True),
            "/huge-nolength.jpg": (200, BIG, "image/jpeg", False),
            "/garbage.jpg": (200, b"not really a jpeg", "image/jpeg", True),
        }
        if self.path == "/slow.jpg":
            time.sleep(3)
            return self._send(200, IMG, "image/png")
        if self.path in routes:
            code, body, ctype, length = routes[self.path]
            return self._send(code, body, ctype, length)
        self._send(404, b"not found", "text/plain")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_image(server):
    for route in ("/img.png", "/noctype", "/octet"):
        img = media.load_image(server + route)
        assert img.shape == (24, 32, 3) and img.dtype == np.uint8
        assert tuple(img[0, 0]) == (10, 20, 30)


@pytest.mark.parametrize(
    "route,words",
    [
        ("/page.html", "not an image"),
        ("/text-noctype", "did not return image data"),
        ("/missing.jpg", "HTTP 404"),
        ("/garbage.jpg", "not an image PIL can read"),
    ],
)
def test_url_errors(server, route, words):
    with pytest.raises(InputError, match=words):
        media.load_image(server + route)


def test_url_too_large(server):
    with pytest.raises(InputError, match="max_bytes"):
        media.load_image(server + "/huge.jpg", max_bytes=1_000_000)
    with pytest.raises(InputError, match="larger than max_bytes"):
        media.load_image(server + "/huge-nolength.jpg", max_bytes=1_000_000)


def test_url_timeout(server):
    with pytest.raises(InputError, match="Timed out"):
        media.load_image(server + "/slow.jpg", timeout=0.5)


def test_url_unreachable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    with pytest.raises(InputError, match="Could not reach"):
        media.load_image(f"http://127.0.0.1:{port}/x.jpg", timeout=2)
    with pytest.raises(InputError, match="http"):
        media.load_image("ftp://example.com/x.jpg")


# --------------------------------------------------------------------------- paths, bytes


def test_path_bytes_fileobj(tmp_path):
    arr = _noise()
    p = tmp_path / "a.png"
    Image.fromarray(arr).save(p)
    np.testing.assert_array_equal(media.load_image(p), arr)
    np.testing.assert_array_equal(media.load_image(str(p)), arr)
    np.testing.assert_array_equal(media.load_image(p.read_bytes()), arr)
    np.testing.assert_array_equal(media.load_image(bytearray(p.read_bytes())), arr)
    with open(p, "rb") as f:
        np.testing.assert_array_equal(media.load_image(f), arr)


def test_path_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        media.load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="folder"):
        media.load_image(tmp_path)
    txt = tmp_path / "notes.jpg"  # a text file renamed .jpg
    txt.write_text("hello, I am not a picture")
    with pytest.raises(InputError, match="notes.jpg.*not an image"):
        media.load_image(txt)
    with pytest.raises(InputError, match="Cannot load an image from a int"):
        media.load_image(42)


def test_truncated_jpeg(tmp_path):
    data = _png_bytes(Image.fromarray(_noise(64, 64)), "JPEG", quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg.*truncated"):
        media.load_image(p)
    with pytest.raises(InputError, match="truncated"):
        media.load_image(data[:-2])  # only the end-of-image marker missing
    # the global PIL switch must not let a truncated file through either
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(InputError, match="truncated"):
            media.load_image(p)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_too_small_and_too_many_pixels():
    with pytest.raises(InputError, match="too small"):
        media.load_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(InputError, match="too small"):
        media.load_image(_png_bytes(Image.new("RGB", (1, 1))))
    assert media.load_image(np.zeros((8, 8, 3), np.uint8)).shape == (8, 8, 3)
    with pytest.raises(InputError, match="max_pixels"):
        media.load_image(_png_bytes(Image.new("RGB", (100, 100))), max_pixels=5000)
    with pytest.raises(InputError, match="max_pixels"):
        media.load_image(np.zeros((100, 100), np.uint8), max_pixels=5000)


# --------------------------------------------------------------------------- modes


def _rgb(im):
    return tuple(int(v) for v in im)


def test_pil_modes_and_files(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 0] = 200
    a[:8, :, 3] = 255  # top opaque red, bottom fully transparent
    rgba = Image.fromarray(a, "RGBA")
    out = media.load_image(rgba)
    assert _rgb(out[0, 0]) == (200, 0, 0) and _rgb(out[15, 0]) == (255, 255, 255)
    # via a PNG file too
    p = tmp_path / "rgba.png"
    rgba.save(p)
    np.testing.assert_array_equal(media.load_image(p), out)

    la = Image.fromarray(np.stack([np.full((16, 16), 50, np.uint8), a[..., 3]], -1), "LA")
    out = media.load_image(la)
    assert _rgb(out[0, 0]) == (50, 50, 50) and _rgb(out[15, 0]) == (255, 255, 255)

    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 255] + [0, 255, 0] + [0, 0, 0] * 254)
    pal.paste(1, (0, 0, 16, 8))
    out = media.load_image(pal)
    assert _rgb(out[0, 0]) == (0, 255, 0) and _rgb(out[15, 0]) == (0, 0, 255)
    pal.info["transparency"] = 0  # index 0 transparent -> white
    out = media.load_image(pal)
    assert _rgb(out[0, 0]) == (0, 255, 0) and _rgb(out[15, 0]) == (255, 255, 255)
    p = tmp_path / "pal.png"
    pal.save(p, transparency=0)
    assert _rgb(media.load_image(p)[15, 0]) == (255, 255, 255)

    out = media.load_image(Image.new("CMYK", (16, 16), (0, 0, 0, 0)))
    assert _rgb(out[0, 0]) == (255, 255, 255)
    out = media.load_image(Image.new("CMYK", (16, 16), (0, 255, 255, 0)))
    assert _rgb(out[0, 0]) == (255, 0, 0)

    i16 = np.zeros((16, 16), np.uint16)
    i16[:8] = 65535
    i16[8:] = 257 * 100
    im16 = Image.fromarray(i16)
    assert im16.mode.startswith("I;16")
    out = media.load_image(im16)
    assert _rgb(out[0, 0]) == (255, 255, 255) and _rgb(out[15, 0]) == (100, 100, 100)
    p = tmp_path / "deep.png"
    im16.save(p)
    np.testing.assert_array_equal(media.load_image(p), out)

    i32 = Image.fromarray((i16.astype(np.int32)), "I")
    assert i32.mode == "I"
    np.testing.assert_array_equal(media.load_image(i32), out)

    f = np.full((16, 16), 0.5, np.float32)
    f[:8] = 1.0
    out = media.load_image(Image.fromarray(f, "F"))
    assert out.dtype == np.uint8 and _rgb(out[0, 0]) == (255,) * 3 and out[15, 0, 0] == 128

    one = Image.new("1", (16, 16), 0)
    one.paste(1, (0, 0, 16, 8))
    out = media.load_image(one)
    assert _rgb(out[0, 0]) == (255,) * 3 and _rgb(out[15, 0]) == (0, 0, 0)

    out = media.load_image(Image.new("L", (16, 16), 77))
    assert out.shape == (16, 16, 3) and _rgb(out[3, 3]) == (77, 77, 77)


def test_exif_rotation(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high
    a[:, :20] = (255, 0, 0)  # left half red
    a[:, 20:] = (0, 0, 255)  # right half blue
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    p = tmp_path / "rot.jpg"
    im.save(p, quality=95, exif=exif.tobytes())
    out = media.load_image(p)
    assert out.shape == (40, 20, 3)  # now tall
    top, bottom = out[5, 10].astype(int), out[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # left (red) went to the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_numpy_inputs():
    g = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)
    out = media.load_image(g)
    assert out.shape == (16, 16, 3) and (out[..., 0] == g).all() and (out[..., 2] == g).all()
    assert media.load_image(g[..., None]).shape == (16, 16, 3)

    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 1] = 100
    rgba[:8, :, 3] = 255
    out = media.load_image(rgba)
    assert _rgb(out[0, 0]) == (0, 100, 0) and _rgb(out[15, 0]) == (255, 255, 255)

    f = np.zeros((16, 16, 3), np.float32)
    f[:8] = 1.0
    f[8:] = 0.2
    out = media.load_image(f)
    assert _rgb(out[0, 0]) == (255,) * 3 and _rgb(out[15, 0]) == (51,) * 3

    u16 = np.full((16, 16, 3), 65535, np.uint16)
    assert _rgb(media.load_image(u16)[0, 0]) == (255,) * 3

    chw = np.zeros((3, 16, 20), np.uint8)
    chw[0] = 9
    out = media.load_image(chw)
    assert out.shape == (16, 20, 3) and _rgb(out[0, 0]) == (9, 0, 0)

    b = np.zeros((16, 16), bool)
    b[0, 0] = True
    out = media.load_image(b)
    assert _rgb(out[0, 0]) == (255,) * 3 and _rgb(out[1, 1]) == (0, 0, 0)

    with pytest.raises(InputError, match="NaN"):
        media.load_image(np.full((16, 16), np.nan, np.float32))
    with pytest.raises(InputError, match="shape"):
        media.load_image(np.zeros((16, 16, 5), np.uint8))


# --------------------------------------------------------------------------- uploads


def test_upload_values():
    data = _png_bytes(Image.new("RGB", (12, 10), (1, 2, 3)))
    v7 = {"cat.png": {"metadata": {"name": "cat.png", "type": "image/png"}, "content": data}}
    v8 = (
        {
            "name": "cat.png",
            "type": "image/png",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": 0,
        },
    )
    assert media.upload_to_bytes(v7) == [("cat.png", data)]
    assert media.upload_to_bytes(v8) == [("cat.png", data)]
    assert media.upload_to_bytes(list(v8)) == [("cat.png", data)]
    for v in (v7, v8, list(v8)):
        img = media.load_image(v)
        assert img.shape == (10, 12, 3) and _rgb(img[0, 0]) == (1, 2, 3)

    class FakeWidget:  # the FileUpload widget itself is accepted too
        value = v8

    assert media.upload_to_bytes(FakeWidget()) == [("cat.png", data)]
    for empty in ({}, (), []):
        with pytest.raises(InputError, match="No file was uploaded"):
            media.load_image(empty)
    bad = ({"name": "x.png", "content": b"nope"},)
    with pytest.raises(InputError, match="x.png"):
        media.load_image(bad)


def test_real_fileupload_widget():
    ipywidgets = pytest.importorskip("ipywidgets")
    data = _png_bytes(Image.new("RGB", (12, 10), (4, 5, 6)))
    w = ipywidgets.FileUpload()
    if int(ipywidgets.__version__.split(".")[0]) >= 8:
        # what the browser sends, through the widget's own deserializer
        js = {"name": "a.png", "type": "image/png", "size": len(data), "last_modified": 0}
        w.set_state({"value": [{**js, "content": memoryview(data)}]})
    else:  # pragma: no cover - 7.x
        w.set_state({"data": [data], "metadata": [{"name": "a.png"}]})
    assert media.upload_to_bytes(w) == [("a.png", data)]
    assert _rgb(media.load_image(w.value)[0, 0]) == (4, 5, 6)
    assert _rgb(media.load_image(w)[0, 0]) == (4, 5, 6)


# --------------------------------------------------------------------------- big images


def test_8000_square_fit_and_restore(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (8000, 8000), 90).save(p, compress_level=1)
    img = media.load_image(p)
    assert img.shape == (8000, 8000, 3) and img[4000, 4000, 0] == 90
    small, scale = media.fit_for_model(img, 1024)
    assert max(small.shape[:2]) == 1024 and small.shape[2] == 3
    assert scale == pytest.approx(1024 / 8000)
    del img
    m = np.zeros((1, *small.shape[:2]), bool)
    m[0, 100:200, 300:400] = True
    full = media.masks_to_size(m, (8000, 8000))
    assert full.shape == (1, 8000, 8000) and full.dtype == bool
    box = media.scale_boxes(np.array([[300, 100, 400, 200]]), 1 / scale)
    assert box[0].tolist() == pytest.approx([2343.75, 781.25, 3125.0, 1562.5])
    ys, xs = np.nonzero(full[0])
    assert abs(xs.min() - 2343.75) < 10 and abs(ys.max() - 1562.5) < 10


def test_fit_small_is_noop_and_masks_2d():
    img = _noise(50, 70)
    out, scale = media.fit_for_model(img, 1024)
    assert scale == 1.0 and out is img
    small, s = media.fit_for_model(_noise(100, 300), 150)
    assert small.shape == (50, 150, 3) and s == 0.5
    m = np.zeros((5, 10), bool)
    m[:, :5] = True
    big = media.masks_to_size(m, (10, 20))
    assert big.shape == (10, 20) and big[:, :10].all() and not big[:, 10:].any()
    assert media.masks_to_size(np.zeros((0, 5, 5), bool), (9, 9)).shape == (0, 9, 9)


# --------------------------------------------------------------------------- videos


def _frames(n=10, h=48, w=64):
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = 20 * i  # red ramps up over time
        f[:, : w // 2, 2] = 200
        out.append(f)
    return out


def test_video_round_trip(tmp_path):
    frames = _frames()
    vid = media.write_video(iter(frames), tmp_path / "out" / "clip.mp4", fps=10)
    assert vid.exists() and vid.stat().st_size > 0
    assert not [p for p in vid.parent.iterdir() if p.name.startswith(".")]  # no temp left
    vf = media.video_to_frames(vid, tmp_path / "frames")
    assert (vf.num_frames, vf.width, vf.height) == (10, 64, 48)
    assert vf.fps == pytest.approx(10)
    assert [p.name for p in vf.frame_paths] == [f"{i:05d}.jpg" for i in range(10)]
    f7 = media.read_frame(vf, 7)
    assert f7.shape == (48, 64, 3)
    assert abs(int(f7[24, 48, 0]) - 140) < 25 and f7[24, 10, 2] > 150
    with pytest.raises(InputError, match="out of range"):
        media.read_frame(vf, 10)

    vf2 = media.video_to_frames(vid, tmp_path / "frames", stride=2, max_frames=3, max_side=32)
    assert (vf2.num_frames, vf2.width, vf2.height) == (3, 32, 24)
    assert vf2.fps == pytest.approx(5)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "00000.jpg",
        "00001.jpg",
        "00002.jpg",
    ]  # stale frames of the first run removed
    assert abs(int(media.read_frame(vf2, 2)[12, 24, 0]) - 80) < 25  # source frame 4


def test_video_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        media.video_to_frames(tmp_path / "missing.mp4")
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="corrupt"):
        media.video_to_frames(bad, tmp_path / "f1")

    import cv2

    empty = tmp_path / "empty.avi"  # a valid container with zero frames
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    w.release()
    assert cv2.VideoCapture(str(empty)).isOpened()
    with pytest.raises(InputError, match="no readable frames"):
        media.video_to_frames(empty, tmp_path / "f2")

    with pytest.raises(InputError, match="no frames"):
        media.write_video(iter([]), tmp_path / "x.mp4", fps=10)
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(InputError, match="same size"):
        media.write_video(
            [np.zeros((16, 16, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], tmp_path / "y.mp4"
        )
    assert not (tmp_path / "y.mp4").exists()
    with pytest.raises(InputError, match="stride"):
        media.video_to_frames(tmp_path, stride=0)


def test_frame_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in (0, 1, 2, 4, 5):  # 3 is missing
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(src / f"frame_{i:03d}.png")
    with pytest.raises(InputError, match="frame 3 is missing"):
        media.video_to_frames(src, tmp_path / "out")
    vf = media.video_to_frames(src, tmp_path / "out", allow_gaps=True)
    assert (vf.num_frames, vf.width, vf.height, vf.fps) == (5, 30, 20, 30.0)
    assert abs(int(media.read_frame(vf, 3)[5, 5, 0]) - 160) < 4  # old frame 4 is now 3

    (src / "frame_003.png").write_bytes((src / "frame_002.png").read_bytes())
    vf = media.video_to_frames(src, tmp_path / "out2", stride=2)
    assert vf.num_frames == 3

    (src / "cover.png").write_bytes((src / "frame_002.png").read_bytes())
    with pytest.raises(InputError, match="end in a number"):
        media.video_to_frames(src, tmp_path / "out3")
    with pytest.raises(InputError, match="no .jpg/.png frames"):
        media.video_to_frames((tmp_path / "out3"), tmp_path / "out4")


def test_jpeg_frame_folder_is_used_as_it_is(tmp_path):
    src = tmp_path / "jpgs"
    src.mkdir()
    for i in range(3):
        img = np.random.default_rng(i).integers(0, 255, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(src / f"{i + 1:04d}.jpg", quality=80)
    vf = media.video_to_frames(src, tmp_path / "out")
    assert (vf.num_frames, vf.width, vf.height) == (3, 32, 24)
    for i, p in enumerate(vf.frame_paths):  # the very same bytes: no second JPEG generation
        assert p.read_bytes() == (src / f"{i + 1:04d}.jpg").read_bytes()
    cv_rgb = media.read_frame(vf, 1)
    assert cv_rgb.shape == (24, 32, 3)
    again = media.video_to_frames(src, tmp_path / "out")  # old links are replaced
    assert again.num_frames == 3
    # downscaling needs decoding: then frames are re-encoded at the new size
    small = media.video_to_frames(src, tmp_path / "small", max_side=16)
    assert (small.width, small.height) == (16, 12)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(src / "0004.jpg")
    with pytest.raises(InputError, match="same size"):
        media.video_to_frames(src, tmp_path / "out3")
