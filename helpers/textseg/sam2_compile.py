"""How SAM 2 is compiled for video: which parts, in which mode, and where it stays eager.

sam2's ``vos_optimized`` predictor (``SAM2VideoPredictorVOS``, written for sam2 1.1.0) wraps
five parts in ``torch.compile(mode="max-autotune", fullgraph=True)``: the image encoder, the
memory encoder, the memory attention (``dynamic=True``) and the prompt encoder and mask
decoder (``dynamic=False``: sam2 reports an accuracy regression with dynamic shapes).
``compile_parts`` replaces those wrappers (before they ever ran) with ``CompiledPart``s of
this module's choosing:

- **shapes that never vary with the video**: sam2 1.1.0 propagates each object on its own
  (batch 1), so the propagation's shapes do not depend on how many objects are tracked, nor
  on objects added or removed; prompts add one object at a time (box, click or mask: three
  shape sets). Those calls stay compiled.
- **the keyframe image path stays eager**: ``SAM2ImagePredictor`` sends all of a keyframe's
  detection boxes through the prompt encoder and mask decoder in one batch, a new shape for
  every new number of boxes; compiled, each is a fresh max-autotune compile, and dynamo's
  recompile limit (8 per function, ``fullgraph=True``) raises ``FailOnRecompileLimitHit`` at
  the ninth. Padding the boxes to buckets would still cost one compile per bucket and share
  the limit with the propagation's shapes. Eager, that is one decoder pass per keyframe
  (one frame in ``detect_every``) with no compile at all: ``eager_heads`` runs it so.
- **the mode fits the GPU**: ``compile_mode`` gives max-autotune only where inductor can use
  its GEMM autotuning (enough SMs, the limit inductor itself applies); elsewhere (a T4 in
  Colab: 40 SMs) nothing is compiled, since a compile of minutes for one short clip never
  pays for itself there.

Every compile is timed (``CompileClock``), so FPS figures can leave it out, and the first
one prints one line saying what is happening and about how long it takes. (CUDA-graph
recordings that max-autotune makes on later calls, without a new graph, are not in the
clock: a small cost that stays inside the FPS.)
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any

# the five parts sam2's vos_optimized predictor compiles, with its dynamic-shape choice
PARTS = {
    "image_encoder": False,
    "memory_encoder": False,
    "memory_attention": True,  # the number of memories varies
    "sam_prompt_encoder": False,
    "sam_mask_decoder": False,
}
HEADS = ("sam_prompt_encoder", "sam_mask_decoder")  # what the keyframe image path calls
# inductor's own threshold for max-autotune GEMMs (``torch._inductor.utils.is_big_gpu``)
MIN_SMS_FOR_AUTOTUNE = 68
# about how long the first compile takes on an H100 (max-autotune, every part, bf16): the
# seconds said up front, not a measurement of this run
COMPILE_SECONDS = {"tiny": 90, "small": 100, "base_plus": 120, "large": 150}


def compile_mode(device) -> str | None:
    """The torch.compile mode for SAM 2 on ``device``: "max-autotune" on a CUDA GPU with at
    least ``MIN_SMS_FOR_AUTOTUNE`` SMs, else None (eager: the CPU, a T4)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None

    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return "max-autotune" if sms >= MIN_SMS_FOR_AUTOTUNE else None


@dataclass
class CompileClock:
    """Seconds spent in calls that compiled (tracing, code generation, autotuning), summed
    over every part; ``compiles`` counts them. ``announce`` is printed before the first."""

    seconds: float = 0.0
    compiles: int = 0
    announce: str = ""
    eager: bool = False  # set by ``eager_heads``: the heads run uncompiled
    started: bool = False


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class CompiledPart:
    """A module's forward: compiled, or eager while the clock says so (``HEADS`` only)."""

    name: str
    eager: Any  # the module's own forward, bound
    compiled: Any  # torch.compile of it
    clock: CompileClock
    calls: int = 0
    compiles: int = 0

    def __call__(self, *args, **kwargs):
        clock = self.clock
        if clock.eager and self.name in HEADS:
            return self.eager(*args, **kwargs)
        if not clock.started:
            clock.started = True
            if clock.announce:
                print(clock.announce, file=sys.stderr, flush=True)
        before, t0 = _graphs(), time.perf_counter()
        out = self.compiled(*args, **kwargs)
        self.calls += 1
        made = _graphs() - before
        if made:
            self.compiles += made
            clock.compiles += made
            clock.seconds += time.perf_counter() - t0
        return out


def compile_parts(
    model, mode: str | None = "max-autotune", backend: Any = "inductor", size: str = ""
) -> CompileClock:
    """Give ``model``'s ``PARTS`` our compiled forwards (``fullgraph``, sam2's dynamic
    choices) and return the clock they share. ``backend``: a torch.compile backend, or
    {part: backend} (parts not named keep "inductor"; tests trace the image encoder with
    dynamo alone to save its CPU compile); ``mode`` applies to the inductor backend only."""
    import torch

    seconds = COMPILE_SECONDS.get(size)
    about = f": about {seconds} s" if seconds else ""
    clock = CompileClock(
        announce=f"Compiling SAM 2 for this GPU, once{about} (the first frames wait for it; "
        "FPS figures leave it out)."
    )
    model.compiled_parts = {}
    for name, dynamic in PARTS.items():
        module = getattr(model, name)
        eager = type(module).forward.__get__(module)
        use = backend.get(name, "inductor") if isinstance(backend, dict) else backend
        kw = {"mode": mode} if use == "inductor" and mode else {}
        compiled = torch.compile(eager, backend=use, fullgraph=True, dynamic=dynamic, **kw)
        module.forward = model.compiled_parts[name] = CompiledPart(name, eager, compiled, clock)
    model.compile_clock = clock
    return clock


def clock_of(model) -> CompileClock | None:
    """The model's ``CompileClock`` (None when it is not compiled)."""
    return getattr(model, "compile_clock", None)


@contextlib.contextmanager
def eager_heads(model):
    """Run the prompt encoder and mask decoder uncompiled inside the block (the keyframe
    image path: one batch of every detection box, whose size varies)."""
    clock = clock_of(model)
    if clock is None or clock.eager:
        yield
        return
    clock.eager = True
    try:
        yield
    finally:
        clock.eager = False
