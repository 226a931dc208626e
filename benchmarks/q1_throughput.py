"""Training throughput: the seed000 pipeline vs ours, same network, same GPU, same run,
decomposed so each cause shows by itself.

(a) seed way: per-image CPU torchvision transforms (RandomCrop(32, 4), RandomHorizontalFlip,
    AutoAugment CIFAR-10 policy, ToTensor, Normalize, RandomErasing), a DataLoader with
    2 workers and batch 128, fp16 autocast + GradScaler, and a ViT whose attention is written
    out by hand (softmax(Q K^T / sqrt(d)) V) -- 10,402,954 parameters, as the seed reports.
(b) ours: images kept on the GPU as uint8, batched GPU augmentation with the same policy
    (helpers.augment.GpuAugment + the seed000 AugConfig, compiled as one graph with the model),
    helpers.vit.ViT (SDPA attention), fused AdamW, optional torch.compile -- run three times:
    (b1) at the seed's batch (128) and precision (fp16 + GradScaler): what the GPU-resident
         pipeline buys by itself;
    (b2) at the seed's batch with our precision (bf16 autocast; fp16 on pre-Ampere GPUs);
    (b3) at our batch (512) and precision: the full recipe.
A row whose settings equal an earlier row's (e.g. on a CPU, where both precisions are fp32)
reuses its measurement. What ran (compile on or off for the model and the augmentation, fused
AdamW, autocast dtype, TF32, DataLoader workers, host CPU model and core count) is read from
the run, not assumed.

Every row runs N warm-up steps, then T timed steps (data loading and augmentation included,
timed between device synchronisations), and the script prints images/s of each and the ratio
to (a). ``--data`` is an ImageFolder root
(``train/<class>/*.jpg`` + ``val/``, e.g. the JPEG CIFAR-10), decoded once into memory for both
pipelines (the seed kept CIFAR-10 in memory too); without it, random uint8 images of CIFAR
shape are used (throughput does not depend on pixel values).

    python benchmarks/q1_throughput.py --data data/cifar10_jpeg --out runs/q1_throughput.json
    python benchmarks/q1_throughput.py --steps 3 --warmup 1 --device cpu   # CPU sanity run
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

SEED_PARAMS = 10_402_954


# ----------------------------------------------------------------------------------------------
# (a) the seed's network: a plain ViT with explicit attention (reference implementation)
# ----------------------------------------------------------------------------------------------
class ExplicitAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale  # [b, h, n, n] materialized
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.drop(self.proj(out))


class SeedBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ExplicitAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SeedViT(nn.Module):
    """Patch embedding (conv), CLS token, learned positions, pre-norm blocks, CLS head."""

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 384,
        depth: int = 7,
        heads: int = 6,
        mlp_ratio: float = 3.0,
        num_classes: int = 10,
        dropout: float = 0.1,
    ):
        super().__init__()
        n = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *[SeedBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.blocks(self.drop(x))
        return self.head(self.norm(x)[:, 0])


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
class ArrayImages(torch.utils.data.Dataset):
    """uint8 HWC images in memory -> PIL -> transform, like torchvision's CIFAR10 dataset."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def synthetic_arrays(n: int, size: int = 32, num_classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    return x, y


def seed_transform(mean, std):
    import torchvision.transforms as T

    return T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.AutoAugment(T.AutoAugmentPolicy.CIFAR10),
            T.ToTensor(),
            T.Normalize(mean, std),
            T.RandomErasing(p=0.25),
        ]
    )


def seed_dataset(data: str | None, n_synthetic: int, mean, std, splits=None):
    """Like torchvision's CIFAR10 dataset: uint8 images in memory, PIL + transforms per item.

    An ImageFolder is decoded once up front (as torchvision's CIFAR-10 arrays are), so the
    timed loop measures the seed's augmentation and loading pipeline, not JPEG decoding.
    ``splits`` (a loaded ``DataSplits``) is used as is instead of reading ``data``."""
    tf = seed_transform(mean, std)
    if splits is None and data:
        from helpers.data import load_image_folder

        splits = load_image_folder(data)
    if splits is not None:
        x = splits.train_x.cpu().permute(0, 2, 3, 1).contiguous().numpy()
        return ArrayImages(x, splits.train_y.cpu().numpy(), tf)
    x, y = synthetic_arrays(n_synthetic)
    return ArrayImages(x, y, tf)


def ours_data(data: str | None, n_synthetic: int, device, splits=None):
    """(uint8 [N,3,32,32], int64 [N], classes) on ``device``; ``splits`` as in seed_dataset."""
    if splits is None and data:
        from helpers.data import load_image_folder

        splits = load_image_folder(data)
    if splits is not None:
        return splits.train_x.to(device), splits.train_y.to(device), splits.num_classes
    x, y = synthetic_arrays(n_synthetic)
    return (
        torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device),
        torch.from_numpy(y).to(device),
        10,
    )


# ----------------------------------------------------------------------------------------------
# what ran
# ----------------------------------------------------------------------------------------------
def host_cpu() -> dict:
    """The host CPU's model name and core counts (all, and usable by this process)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cores": os.cpu_count(), "usable_cores": usable}


def tf32_state(device) -> bool:
    """Whether float32 matmuls and convolutions may use TF32 right now (read from torch)."""
    if device.type != "cuda":
        return False
    return bool(
        torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    )


def seed_precision(device) -> str:
    """The seed's precision on ``device``: fp16 autocast + GradScaler on a GPU, else fp32."""
    return "fp16" if device.type == "cuda" else "fp32"


# ----------------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------------
def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, warmup: int, steps: int, batch: int, device, label: str) -> dict:
    """Run ``step()`` warmup+steps times; time the last ``steps`` (wall clock, synced)."""
    from tqdm.auto import tqdm

    for _ in tqdm(range(warmup), desc=f"{label} warm-up", leave=False):
        step()
    sync(device)
    t0 = time.perf_counter()
    loss = float("nan")
    for _ in tqdm(range(steps), desc=f"{label} timed", leave=False):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "steps": steps,
        "batch_size": batch,
        "images_per_second": steps * batch / seconds,
        "last_loss": float(loss),
    }


# ----------------------------------------------------------------------------------------------
# (a) seed pipeline
# ----------------------------------------------------------------------------------------------
def run_seed(args, device, mean, std, splits=None) -> dict:
    torch.manual_seed(0)
    ds = seed_dataset(args.data, args.synthetic_n, mean, std, splits)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=args.seed_batch,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    model = SeedViT().to(device)
    params = n_params(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()

    def batches():
        while True:
            yield from loader

    it = batches()

    def step():
        x, y = next(it)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = crit(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    out = timed(step, args.warmup, args.steps, args.seed_batch, device, "(a) seed")
    out.update(
        params=params,
        precision="fp16+GradScaler" if use_amp else "fp32",
        dtype="float16" if use_amp else "float32",
        workers=loader.num_workers,
        compiled=False,
        augmentation="per-image CPU (torchvision)",
        aug_compiled=False,
        fused_adamw=bool(opt.defaults.get("fused")),
        tf32=tf32_state(device),
        attention="explicit softmax(QK^T)V",
    )
    return out


# ----------------------------------------------------------------------------------------------
# (b) ours
# ----------------------------------------------------------------------------------------------
def run_ours(args, device, splits=None, batch=None, precision=None) -> dict:
    """Our training step on the seed000 network at ``batch`` (default ``--batch``) and
    ``precision`` (default ``--precision``)."""
    from helpers.augment import GpuAugment
    from helpers.data import iterate_batches
    from helpers.models import build_model
    from helpers.presets import get_preset
    from helpers.runtime import autocast_dtype, enable_fast_matmul
    from helpers.step import make_optimizer, soft_cross_entropy

    torch.manual_seed(0)
    batch = int(batch or args.batch)
    precision = precision or args.precision
    preset = get_preset("seed000", batch_size=batch, precision=precision)
    cfg = preset.train
    x_all, y_all, num_classes = ours_data(args.data, args.synthetic_n, device, splits)
    if device.type == "cuda":
        enable_fast_matmul()
    model, spec = build_model(preset, num_classes, pretrained=False)
    model.to(device).train()
    params = n_params(model)
    opt = make_optimizer(model, cfg, device)  # AdamW, fused on CUDA
    fused = bool(opt.defaults.get("fused"))
    dtype = autocast_dtype(device, cfg.precision)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    compiled = bool(args.compile)
    forward = torch.compile(model) if compiled else model
    aug = GpuAugment(preset.aug, spec, num_classes)
    if compiled:
        aug.compile(log=lambda m: print(m, file=sys.stderr))
    shuffle_gen = torch.Generator(device=device).manual_seed(0)
    aug_gen = torch.Generator(device=device).manual_seed(1)
    params_list = [p for g in opt.param_groups for p in g["params"]]

    def batches():
        while True:
            yield from iterate_batches(len(y_all), batch, True, shuffle_gen, device, drop_last=True)

    it = batches()

    def step():  # the same work as one step of helpers.train.train
        nonlocal forward, compiled
        if compiled and forward is not model and not getattr(step, "ok", False):
            try:  # first call compiles; fall back to eager (and say so) if that fails
                loss = _step()
                step.ok = True
                return loss
            except Exception as e:
                print(
                    f"warning: torch.compile failed ({type(e).__name__}: {e}); eager",
                    file=sys.stderr,
                )
                forward, compiled = model, False
        return _step()

    def _step():
        idx = next(it)
        x, y_soft = aug(x_all[idx], y_all[idx], generator=aug_gen)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = forward(x)
        loss = soft_cross_entropy(logits, y_soft, cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params_list, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            nn.utils.clip_grad_norm_(params_list, cfg.grad_clip)
            opt.step()
        return loss.detach()

    out = timed(step, args.warmup, args.steps, batch, device, f"ours, batch {batch}")
    dtype_name = str(dtype).replace("torch.", "") if dtype is not None else "float32"
    short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype_name]
    out.update(
        params=params,
        precision=short + ("+GradScaler" if scaler is not None else ""),
        dtype=dtype_name,
        workers=0,  # the images are indexed on the device: no loader
        compiled=compiled,
        augmentation="batched on the device",
        aug_compiled=aug.compiled is not None,
        fused_adamw=fused,
        tf32=tf32_state(device),
        attention="F.scaled_dot_product_attention",
    )
    return out


ROWS = (  # key, label, (batch, precision) as a function of the arguments and device
    ("seed", "(a) seed000 way", None),
    ("ours_seed_batch_seed_precision", "(b1) ours, seed batch + precision", "seed_seed"),
    ("ours_seed_batch", "(b2) ours, seed batch, our precision", "seed_ours"),
    ("ours", "(b3) ours, our batch + precision", "ours_ours"),
)


def row_settings(kind: str, args, device) -> tuple[int, str]:
    batch = args.seed_batch if kind.startswith("seed") else args.batch
    precision = seed_precision(device) if kind.endswith("_seed") else args.precision
    return batch, precision


def decomposed(args, device, mean, std, splits=None, on_error=None) -> dict:
    """Every row of :data:`ROWS` (``--only`` picks the seed row or ours); a row with the same
    (batch, dtype) as an earlier one reuses its figures. ``on_error(key, exc)`` records a
    failed row and goes on (default: raise)."""
    from helpers.runtime import autocast_dtype

    res: dict = {"rows": []}
    done: dict = {}
    for key, label, kind in ROWS:
        if (kind is None and args.only == "ours") or (kind is not None and args.only == "seed"):
            continue
        try:
            if kind is None:
                r = run_seed(args, device, mean, std, splits)
            else:
                batch, precision = row_settings(kind, args, device)
                same = (batch, str(autocast_dtype(device, precision)))
                if same in done:
                    r = {**res[done[same]], "same_as": done[same]}
                else:
                    r = run_ours(args, device, splits, batch=batch, precision=precision)
                    done[same] = key
        except Exception as e:
            if on_error is None:
                raise
            on_error(key, e)
            continue
        r["label"] = label
        res[key] = r
        res["rows"].append(key)
        _report(label, r)
    if "seed" in res:
        base = res["seed"]["images_per_second"]
        for key in res["rows"]:
            res[key]["vs_seed"] = res[key]["images_per_second"] / base
    return res


# ----------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="ImageFolder root (train/<class>/...); default: synthetic")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per pipeline")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 20, CPU 1)")
    ap.add_argument("--batch", type=int, default=512, help="our batch size")
    ap.add_argument("--seed-batch", type=int, default=128, help="the seed's batch size")
    ap.add_argument("--workers", type=int, default=2, help="seed DataLoader workers")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="torch.compile our model (default: on for CUDA)")  # fmt: skip
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    ap.add_argument("--synthetic-n", type=int, default=50_000, help="synthetic train images")
    ap.add_argument("--only", choices=["seed", "ours"], help="run one pipeline only")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from helpers.errors import InputError
    from helpers.files import atomic_write_json
    from helpers.presets import CIFAR10_MEAN, CIFAR10_STD
    from helpers.runtime import gpu_summary, pick_device

    try:
        device = pick_device(args.device)
    except InputError as e:
        sys.exit(f"error: {e}")
    if args.warmup is None:
        args.warmup = 20 if device.type == "cuda" else 1
    if args.compile is None:
        args.compile = device.type == "cuda"
    if args.data and not Path(args.data).is_dir():
        sys.exit(f"error: --data {args.data} is not a folder (expected train/<class>/*.jpg).")

    result: dict = {
        "device": gpu_summary(),
        "torch": torch.__version__,
        "host_cpu": host_cpu(),
        "data": args.data or f"synthetic uint8 {args.synthetic_n}x3x32x32",
        "warmup_steps": args.warmup,
    }
    print(f"device: {result['device']}", file=sys.stderr)
    try:
        result.update(decomposed(args, device, CIFAR10_MEAN, CIFAR10_STD))
    except InputError as e:
        sys.exit(f"error: {e}")
    for key in result["rows"]:
        if result[key]["params"] != SEED_PARAMS:
            print(
                f"warning: {key} model has {result[key]['params']:,} parameters, "
                f"not {SEED_PARAMS:,}",
                file=sys.stderr,
            )
    if "seed" in result and "ours" in result:
        result["speedup"] = (
            result["ours"]["images_per_second"] / result["seed"]["images_per_second"]
        )
    _table(result)
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")
    return result


def _report(label: str, r: dict) -> None:
    again = f", same settings as {r['same_as']}" if r.get("same_as") else ""
    print(
        f"{label}: {r['images_per_second']:.0f} img/s ({r['steps']} steps x {r['batch_size']} "
        f"in {r['seconds']:.2f} s, loss {r['last_loss']:.3f}{again})",
        file=sys.stderr,
    )


def what_ran(r: dict) -> str:
    """One line of what a row really ran, as read from it."""
    parts = [r["dtype"], "model compiled" if r["compiled"] else "model eager"]
    if r.get("augmentation", "").startswith("batched"):
        parts.append("augmentation compiled" if r["aug_compiled"] else "augmentation eager")
    parts += [
        "fused AdamW" if r["fused_adamw"] else "AdamW (not fused)",
        "TF32 on" if r["tf32"] else "TF32 off",
        f"DataLoader with {r['workers']} workers"
        if r.get("augmentation", "").startswith("per-image")
        else "images indexed on the device",
    ]
    return ", ".join(parts)


def _table(result: dict) -> None:
    cpu = result["host_cpu"]
    print(f"\n{result['device']} | host: {cpu['model']}, {cpu['usable_cores']} cores")
    print(f"data: {result['data']}")
    print(f"{'pipeline':<38} {'batch':>6} {'precision':>16} {'img/s':>10} {'x seed':>7}")
    for key in result["rows"]:
        r = result[key]
        vs = f"{r['vs_seed']:.2f}" if "vs_seed" in r else "-"
        print(
            f"{r['label']:<38} {r['batch_size']:>6} {r['precision']:>16} "
            f"{r['images_per_second']:>10.0f} {vs:>7}"
        )
    for key in result["rows"]:
        print(f"  {result[key]['label']}: {what_ran(result[key])}")
    if "speedup" in result and math.isfinite(result["speedup"]):
        print(f"ratio (b3)/(a): {result['speedup']:.2f}x")


if __name__ == "__main__":
    main()
