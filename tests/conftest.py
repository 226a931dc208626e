"""Shared test setup: offline, headless, few threads (CI has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def shrunk_sam2_tiny(**kw):
    """SAM 2.1 tiny with random weights, shrunk (one stage block each, one memory layer) and at
    128 px: the same masks on every run. ``kw`` go to ``load_video_tracker``."""
    import torch

    from helpers.textseg import track

    torch.manual_seed(0)
    return track.load_video_tracker(
        "tiny",
        device="cpu",
        random_weights=True,
        image_size=128,
        model_overrides=[
            "++model.image_encoder.trunk.stages=[1,1,1,1]",
            "++model.memory_attention.num_layers=1",
        ],
        **kw,
    )


@pytest.fixture(scope="module")
def sam2_tiny():
    return shrunk_sam2_tiny()


@pytest.fixture(scope="session")
def build_sam2_tiny():
    """``shrunk_sam2_tiny`` itself, for a test module that needs other loading options."""
    return shrunk_sam2_tiny
