"""How far looks are trusted in one video: the evidence its confirmed observations give."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helpers.textseg.identity_config import IdentityConfig

MAD_TO_SD = 1.4826  # a normal distribution's standard deviation per median absolute deviation


@dataclass
class LookEvidence:
    """How well looks tell one label's objects apart in this video: the cosines of confirmed
    observations with their own object's stored look (*same*) and with other confirmed
    objects' looks (*other*), the latest ``look_window`` of each. Each kind's centre and
    spread are their median and median absolute deviation (one odd sample, such as a false
    box that was the only other detection on a keyframe, moves neither), shrunk towards a
    prior (``IdentityConfig.look_prior_*``) that weighs as ``look_prior_n`` samples before any
    and fades as they come (``n * n / (n + k)`` after ``k``: half after ``n``, 4 % after 50).

    A look decides only where it separates (``cut``): it says "another object" below the
    same-object centre by ``look_z`` spreads (a false box, or another class of thing, even
    when this label's objects all look alike), and "same" above the other-object centre by as
    many, only when the two centres lie ``look_separation`` pooled spreads apart (both split
    at the point between the two centres, so a cosine never says both). Between the two, and
    for "same" where objects look alike, the look says nothing, and place, motion and size
    decide as they do without embeddings."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {"same": [], "other": []})

    def add(self, kind: str, value: float, window: int) -> None:
        self.samples[kind] = [*self.samples[kind], float(value)][-int(window) :]

    def estimate(self, kind: str, cfg: IdentityConfig) -> tuple[float, float]:
        """(centre, spread) of one kind, the prior's counted as ``look_prior_n`` samples."""
        x = np.asarray(self.samples[kind], np.float64)
        p, sd = float(cfg.look_prior_n), float(cfg.look_prior_sd)
        if kind == "same":
            mu = float(cfg.veto_threshold) + cfg.look_z * sd
        else:
            mu = float(cfg.reid_threshold) - cfg.look_z * sd
        if not len(x) or not cfg.uses("calibrate_looks"):
            return mu, sd
        k, med = len(x), float(np.median(x))
        p = p * p / (p + k)  # the prior fades as the video's own samples come in
        spread = MAD_TO_SD * float(np.median(np.abs(x - med)))
        return (p * mu + k * med) / (p + k), float(np.sqrt((p * sd * sd + k * spread**2) / (p + k)))

    def cut(self, cfg: IdentityConfig) -> tuple[float, float]:
        """(says "same" at or above: NaN where this label's objects look alike, says
        "other" below)."""
        (ms, ss), (mo, so) = self.estimate("same", cfg), self.estimate("other", cfg)
        if ms - mo < cfg.look_separation * np.sqrt((ss * ss + so * so) / 2):
            return float("nan"), ms - cfg.look_z * ss
        split = (mo * ss + ms * so) / max(ss + so, 1e-9)  # as many spreads from each centre
        return max(mo + cfg.look_z * so, split), min(ms - cfg.look_z * ss, split)

    def copy(self) -> LookEvidence:
        return LookEvidence({k: list(v) for k, v in self.samples.items()})
