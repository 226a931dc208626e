"""A SAM 2 video predictor stand-in with no model inside, for measuring the video path's host work.

``StubPredictor`` has the ``sam2`` video predictor's interface (``init_state``,
``add_new_points_or_box``, ``add_new_mask``, ``propagate_in_video``, ``reset_state``,
``remove_object``) and keeps sam2's state layout (``obj_id_to_idx``, ``obj_idx_to_id``,
``output_dict_per_obj`` by object index with its conditioning and non-conditioning outputs,
each with an ``object_score_logits`` tensor, as sam2 stores them). It loads frames the way
``sam2`` does (``load_video_frames``, looked up at call time, so whatever feeds sam2's state
feeds it too), reads each frame it visits from the state as ``sam2``'s ``_get_image_feature``
does, and returns logits at the video's resolution (one disc per object, laid out on a
grid so that 16 objects do not overlap). ``stub_keyframe_features`` stands in for SAM 2's
image path on keyframes: a full-resolution mask per detection box (a disc inside it) and an
embedding per box. Everything the project does around the model is real; the stand-ins'
own CPU time (making their outputs) is summed in ``own_seconds`` so the benchmark can
subtract it, as a real model's work is not host work either.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

own_seconds = [0.0]  # CPU seconds the stand-ins spent making their outputs


@contextlib.contextmanager
def _own():
    t0 = time.thread_time()
    try:
        yield
    finally:
        own_seconds[0] += time.thread_time() - t0


def grid_boxes(n: int, h: int, w: int) -> np.ndarray:
    """xyxy boxes of ``n`` objects on a grid of up to 4 x 4 cells over an h x w frame."""
    cols = min(4, max(1, n))
    rows = -(-n // cols)
    ch, cw = h / max(rows, 2), w / cols
    out = []
    for k in range(n):
        r, c = divmod(k, cols)
        out.append([c * cw + 0.15 * cw, r * ch + 0.15 * ch, (c + 0.85) * cw, (r + 0.85) * ch])
    return np.array(out, np.float32)


def _discs(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool [N,H,W]: the disc inscribed in each box."""
    yy, xx = np.ogrid[:h, :w]
    out = np.zeros((len(boxes), h, w), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
        out[k] = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    return out


EMBED_DIM = 256  # SAM 2's image-encoder channels: what appearance embeddings are made of


def _looks(n: int) -> np.ndarray:
    """[n, EMBED_DIM] fixed unit vectors, one per detection index (the same every call)."""
    rows = np.random.default_rng(7).standard_normal((max(n, 16), EMBED_DIM)).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True))[:n]


def stub_keyframe_features(tracker, image, boxes, masks, *args, **kwargs):
    """(masks [N,H,W], embeddings [N,256]) for a keyframe's boxes, as SAM 2's image path gives
    them (made once per set of boxes: model work, not host work)."""
    with _own():
        h, w = image.shape[:2]
        key = (tuple(np.asarray(boxes).round(1).reshape(-1)), h, w)
        made = stub_keyframe_features.__dict__.setdefault("made", {})
        if key not in made:
            made.clear()
            made[key] = _discs(np.asarray(boxes), h, w)
        out = made[key].copy() if masks is None else masks  # a fresh array, as the model's
        return out, _looks(len(boxes))


class StubPredictor:
    def __init__(self, image_size: int = 1024):
        import torch

        self.image_size = int(image_size)
        self.device = torch.device("cpu")
        self.frames_read = 0
        self._made: dict = {}  # fixed logits per set of objects (not host work)

    def init_state(
        self, video_path, offload_video_to_cpu=False, offload_state_to_cpu=False,
        async_loading_frames=False,
    ):  # fmt: skip
        import sam2.sam2_video_predictor as vp

        images, h, w = vp.load_video_frames(
            video_path=video_path,
            image_size=self.image_size,
            offload_video_to_cpu=offload_video_to_cpu,
            async_loading_frames=async_loading_frames,
            compute_device=self.device,
        )
        state = {
            "images": images,
            "num_frames": len(images),
            "video_height": h,
            "video_width": w,
            "device": self.device,
            "obj_ids": [],
            "obj_id_to_idx": {},
            "obj_idx_to_id": {},
            "output_dict_per_obj": {},
            "cached_features": {},
        }
        self._read(state, 0)
        return state

    def _read(self, state, t: int) -> None:
        """What sam2's ``_get_image_feature`` does with a frame before the image encoder; the
        frame itself comes from the project's frames (its work, outside the stand-in's)."""
        if t not in state["cached_features"]:
            frame = state["images"][t]
            with _own():
                image = frame.to(self.device).float().unsqueeze(0)
                state["cached_features"] = {t: (image, None)}
                self.frames_read += 1

    def _logits(self, state):
        """[N,1,H,W] logits, one disc per object where its prompt put it; made once per set
        of objects and places (each object's disc once per place)."""
        import torch

        h, w = state["video_height"], state["video_width"]
        ids = state["obj_ids"]
        if not ids:
            return None
        places = state.setdefault("places", {})  # id -> the box its prompt gave
        boxes = [tuple(places.get(i, (0.0, 0.0, 0.0, 0.0))) for i in ids]
        key = tuple(boxes), (h, w)
        if key not in self._made:
            if len(self._made) > 8:
                self._made.clear()
            discs = self.__dict__.setdefault("_discs", {})
            if len(discs) > 256:
                discs.clear()
            for b in boxes:
                if (b, h, w) not in discs:
                    disc = _discs(np.array([b], np.float32), h, w)
                    discs[b, h, w] = torch.from_numpy(np.where(disc, 8.0, -8.0).astype(np.float32))
            self._made[key] = torch.stack([discs[b, h, w] for b in boxes])
        return self._made[key]

    def _store(self, state, t: int, kind: str) -> None:
        """Each object's output on frame t, as sam2 keeps it (object score logit inside)."""
        import torch

        for d in state["output_dict_per_obj"].values():
            if t not in d["cond_frame_outputs"]:
                d[kind][t] = {"object_score_logits": torch.full((1, 1), 6.0)}

    def _add(self, state, frame_idx, obj_id, place):
        """Add or re-prompt an object: its disc goes where its prompt put it (``place``: a
        box)."""
        obj_id = int(obj_id)
        state.setdefault("places", {})[obj_id] = tuple(float(v) for v in place)
        if obj_id not in state["obj_id_to_idx"]:
            idx = len(state["obj_ids"])
            state["obj_ids"].append(obj_id)
            state["obj_id_to_idx"][obj_id] = idx
            state["obj_idx_to_id"][idx] = obj_id
            state["output_dict_per_obj"][idx] = {
                "cond_frame_outputs": {}, "non_cond_frame_outputs": {}
            }  # fmt: skip
        idx = state["obj_id_to_idx"][obj_id]
        import torch

        out = state["output_dict_per_obj"][idx]
        out["cond_frame_outputs"][frame_idx] = {"object_score_logits": torch.full((1, 1), 6.0)}
        return frame_idx, list(state["obj_ids"]), self._logits(state)

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
        self._read(state, frame_idx)
        with _own():
            if box is None:  # a click: a box of a tenth of the frame around it
                x, y = np.asarray(points, np.float32).reshape(-1, 2)[0]
                r = 0.05 * state["video_height"]
                box = (x - r, y - r, x + r, y + r)
            return self._add(state, frame_idx, obj_id, np.asarray(box, np.float32).reshape(4))

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self._read(state, frame_idx)
        with _own():
            m = np.asarray(mask, bool)
            ys, xs = np.nonzero(m)
            box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, 0, 0)
            return self._add(state, frame_idx, obj_id, box)

    def propagate_in_video(self, state, start_frame_idx=0, max_frame_num_to_track=None,
                           reverse=False):  # fmt: skip
        n = state["num_frames"]
        m = n if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:  # sam2's processing order
            end = max(start_frame_idx - m, 0)
            frames = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else []
        else:
            frames = range(start_frame_idx, min(start_frame_idx + m, n - 1) + 1)
        for t in frames:
            self._read(state, t)
            with _own():
                self._store(state, t, "non_cond_frame_outputs")
                out = t, list(state["obj_ids"]), self._logits(state)
            yield out

    def reset_state(self, state):
        for key in ("obj_id_to_idx", "obj_idx_to_id", "output_dict_per_obj", "places"):
            state[key] = {}
        state["obj_ids"] = []

    def remove_object(self, state, obj_id, strict=False, need_output=True):
        if obj_id in state["obj_id_to_idx"]:
            keep = [i for i in state["obj_ids"] if i != obj_id]
            old = {i: state["output_dict_per_obj"][state["obj_id_to_idx"][i]] for i in keep}
            state["obj_ids"] = keep
            state["obj_id_to_idx"] = {i: k for k, i in enumerate(keep)}
            state["obj_idx_to_id"] = dict(enumerate(keep))
            state["output_dict_per_obj"] = {k: old[i] for k, i in enumerate(keep)}
        return 0, list(state["obj_ids"])
