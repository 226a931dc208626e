"""A SAM 2 video predictor stand-in with no model inside, for measuring the video path's host work.

``StubPredictor`` has the ``sam2`` video predictor's interface (``init_state``,
``add_new_points_or_box``, ``add_new_mask``, ``propagate_in_video``, ``reset_state``,
``remove_object``): it loads frames the way ``sam2`` does (``load_video_frames``, looked up at
call time, so whatever feeds sam2's state feeds it too), reads each frame it visits from the
state as ``sam2``'s ``_get_image_feature`` does, and returns fixed logits at the video's
resolution (one disc per object). Everything the project does around the model is real.
"""

from __future__ import annotations

import numpy as np


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
            "output_dict_per_obj": {},
            "cached_features": {},
        }
        self._read(state, 0)
        return state

    def _read(self, state, t: int) -> None:
        """What sam2's ``_get_image_feature`` does with a frame before the image encoder."""
        if t not in state["cached_features"]:
            image = state["images"][t].to(self.device).float().unsqueeze(0)
            state["cached_features"] = {t: (image, None)}
            self.frames_read += 1

    def _logits(self, state):
        """[N,1,H,W] logits, one disc per object; made once per set of objects."""
        import torch

        h, w = state["video_height"], state["video_width"]
        key = tuple(state["obj_ids"]), (h, w)
        if key not in self._made:
            yy, xx = np.ogrid[:h, :w]
            out = []
            for i in state["obj_ids"]:
                cx, cy, r = w * (0.2 + 0.25 * (i % 3)), h * 0.5, h * 0.12
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
                out.append(np.where(disc, 8.0, -8.0).astype(np.float32)[None])
            self._made[key] = torch.from_numpy(np.stack(out)) if out else None
        return self._made[key]

    def _add(self, state, frame_idx, obj_id):
        if obj_id not in state["obj_ids"]:
            state["obj_ids"].append(int(obj_id))
            state["output_dict_per_obj"][int(obj_id)] = {"non_cond_frame_outputs": {}}
        self._read(state, frame_idx)
        return frame_idx, list(state["obj_ids"]), self._logits(state)

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
        return self._add(state, frame_idx, obj_id)

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        return self._add(state, frame_idx, obj_id)

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
            yield t, list(state["obj_ids"]), self._logits(state)

    def reset_state(self, state):
        state["obj_ids"] = []
        state["output_dict_per_obj"] = {}

    def remove_object(self, state, obj_id, strict=False, need_output=True):
        if obj_id in state["obj_ids"]:
            state["obj_ids"].remove(obj_id)
            state["output_dict_per_obj"].pop(obj_id, None)
        return 0, list(state["obj_ids"])
