"""The one route verb: ``segment(image, phrases, settings) -> sv.Detections`` for Grounding DINO
+ SAM 2.1, CLIPSeg and SAM 3 alike (random-weight models, CPU)."""

from __future__ import annotations

import pytest
import supervision as sv
import torch

from helpers.errors import InputError
from helpers.textseg import detect, routes, sam3, segment
from tests.textseg.test_cli_segment import _scene

PHRASES = ["red square", "grass"]


@pytest.fixture(scope="module")
def every_route():
    torch.manual_seed(0)
    detector = detect.random_grounding_dino(words=PHRASES, size="toy", device="cpu")
    segmenter = segment.load_segmenter("tiny", random_weights=True, device="cpu", image_size=128)
    return [
        routes.DetectSam2(detector, segmenter),
        routes.ClipSeg(segment.random_clipseg("cpu")),
        routes.Sam3(sam3.random_sam3("toy", device="cpu")),
    ]


def test_every_route_gives_detections_with_masks_boxes_scores_and_labels(every_route):
    image = _scene(h=96, w=128)
    settings = routes.RouteSettings(
        box_threshold=0.0, text_threshold=0.0, mask_threshold=0.0, score_threshold=0.0
    )
    assert [r.route.name for r in every_route] == list(routes.ROUTES)
    for route in every_route:
        found = route.segment(image, PHRASES, settings)
        n = len(found)
        assert isinstance(found, sv.Detections) and n >= 1, route.route.name
        assert found.mask.shape == (n, 96, 128) and found.mask.dtype == bool
        assert found.xyxy.shape == (n, 4) and found.confidence.shape == (n,)
        assert set(found.data["class_name"]) <= set(PHRASES), route.route.name


@pytest.mark.parametrize("phrases", [[], "red square", ["red square", " "]])
def test_phrases_are_a_list_of_words(every_route, phrases):
    with pytest.raises(InputError, match="phrases"):
        every_route[0].segment(_scene(), phrases, routes.RouteSettings())
