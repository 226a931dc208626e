"""Several processes, one run: PyTorch's own distributed runtime, as ``torchrun`` sets it up.

``torchrun --nproc-per-node N -m helpers train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in the environment; :func:`from_env` joins
them (NCCL on GPUs, gloo on the CPU). Without those variables everything here is a no-op for
a single process, so the same code runs in a notebook.

The few collective verbs the training loop needs are here: :meth:`Dist.agree` (one small
all-reduce, e.g. "is the budget spent on any rank?"), :meth:`Dist.sum_` and
:meth:`Dist.gather` (objects, e.g. every rank's RNG state or its share of the logits).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from helpers.errors import InputError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    control: object = None  # a gloo group on the CPU for small decisions (None: the default)

    @property
    def on(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, values: list[float], op: str = "max") -> list[float]:
        """The element-wise max (or sum) of ``values`` over all ranks: the same on every rank.
        Runs on the CPU (gloo), so it never waits for the GPU's queue."""
        if not self.on:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        op_ = dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM
        dist.all_reduce(t, op=op_, group=self.control)
        return t.tolist()

    def sum_(self, *tensors) -> None:
        """Sum device tensors over all ranks, in place."""
        if not self.on:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.on:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.on:
            import torch.distributed as dist

            dist.barrier()


def from_env(device: str | None = None) -> Dist:
    """Join the process group ``torchrun`` describes in the environment (one process: no-op).

    ``device`` "cpu" forces gloo; otherwise NCCL when CUDA is available."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and str(device or "cuda").split(":")[0] == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        try:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        except (RuntimeError, ValueError) as e:
            raise InputError(
                f"could not join the {world} training processes ({e}); start them with "
                "torchrun --nproc-per-node N -m helpers ... (it sets RANK, WORLD_SIZE, "
                "MASTER_ADDR and MASTER_PORT)."
            ) from None
    backend = dist.get_backend()
    control = dist.new_group(backend="gloo") if backend == "nccl" else None
    return Dist(dist.get_rank(), dist.get_world_size(), local, backend, control)


def shard(n: int, d: Dist) -> range:
    """This rank's contiguous share of ``range(n)`` (sizes differ by at most one)."""
    per, extra = divmod(n, d.world)
    start = d.rank * per + min(d.rank, extra)
    return range(start, start + per + (1 if d.rank < extra else 0))


__all__ = ["Dist", "from_env", "shard"]
