"""Models loaded once per process and reused by later commands (a notebook calling
``cli.main`` again, a test session), and random-weight builds seeded so every run and every
torchrun process gets the same weights."""

from __future__ import annotations

MODELS: dict[tuple, object] = {}  # models loaded in this process, reused by later commands


def cached(key: tuple, build):
    if key not in MODELS:
        MODELS[key] = build()
    return MODELS[key]


def seeded(build):
    """``build`` with the random generator seeded first: random weights are the same in every
    run and in every process of a torchrun job."""

    def make():
        import torch

        torch.manual_seed(0)
        return build()

    return make
