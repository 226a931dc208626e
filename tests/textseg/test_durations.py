"""--keep-missed and its Python / form equivalents: a duration in seconds or frames, never
keyframes (whose duration would change with the detection cadence)."""

import pytest

from helpers.errors import InputError
from helpers.textseg import durations


@pytest.mark.parametrize(
    ("value", "fps", "want"),
    [("2s", 30, 2.0), ("1.5s", 30, 1.5), (2, 25, 2.0), (0.5, 30, 0.5), ("45f", 30, 1.5),
     ("45 frames", 15, 3.0), ("0s", 30, 0.0), (" 3 S ", 30, 3.0), ("60f", 0, 2.0)],
)  # fmt: skip
def test_seconds_and_frames_become_seconds(value, fps, want):
    assert durations.seconds(value, fps) == pytest.approx(want)


@pytest.mark.parametrize(
    ("value", "says"),
    [("-1s", ">= 0"), ("4", "needs its unit"), ("1.5", "used to count keyframes"), ("2k", "keyframes are no longer a unit"), ("2 keyframes", "keyframes"),
     ("two", "seconds (e.g. --keep-missed 2s"), ("", "45f"), (True, "duration"), ("nan", "45f"),
     (float("inf"), ">= 0")],
)  # fmt: skip
def test_bad_durations_say_what_to_give(value, says):
    with pytest.raises(InputError, match="--keep-missed") as e:
        durations.seconds(value, 30)
    assert says in str(e.value)


def test_the_tracker_keeps_missed_objects_for_a_duration_not_keyframes():
    from helpers.textseg import track

    cfg = track.IdentityConfig()
    assert track.identity_config(cfg, "45f", 30.0).keep_seconds == pytest.approx(1.5)
    assert track.identity_config(cfg, 2, 25.0).keep_seconds == pytest.approx(2.0)
    # the default does not depend on the detection cadence (no detect_every any more)
    assert track.identity_config(cfg, durations.KEEP_MISSED, 30.0).keep_seconds == 2.0
    with pytest.raises(InputError, match="keep_missed"):
        track.identity_config(cfg, "3 keyframes", 30.0)
