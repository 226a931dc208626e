"""helpers/augment.py: every batched op, the policies, MixUp/CutMix and the full pipeline."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from helpers import augment as A
from helpers.errors import InputError
from helpers.presets import CIFAR10_MEAN, CIFAR10_STD, AugConfig, get_preset

try:
    from helpers.vit import InputSpec
except ImportError:  # models module not there yet

    @dataclasses.dataclass
    class InputSpec:
        mean: tuple
        std: tuple
        size: int


def _batch(b=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- crop / flip


def test_flip_twice_is_identity_and_random_flip_mirrors_or_keeps():
    x = _batch()
    assert torch.equal(A.hflip(A.hflip(x)), x)
    assert torch.equal(A.hflip(x)[..., 0], x[..., -1])
    y = A.random_hflip(x, _gen(1))
    kept = (y == x).flatten(1).all(1)
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    assert (kept | flipped).all() and kept.any() and flipped.any()


def test_crop_padding_zero_is_identity():
    x = _batch()
    assert torch.equal(A.random_crop(x, 0, _gen()), x)
    zeros = torch.zeros(8, dtype=torch.long)
    assert torch.equal(A._crop_with_offsets(x, 0, zeros, zeros), x)
    assert torch.equal(A._crop_with_offsets(x, 3, zeros + 3, zeros + 3), x)  # centred offset


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crop_with_known_offsets_matches_manual_shift(mode):
    x = _batch(b=4, size=10)
    p = 3
    dy = torch.tensor([0, 6, 2, 5])
    dx = torch.tensor([6, 0, 3, 1])
    out = A._crop_with_offsets(x, p, dy, dx, padding_mode=mode)
    padded = F.pad(x.float(), (p, p, p, p), mode=mode).to(torch.uint8)
    for b in range(4):
        ref = padded[b, :, dy[b] : dy[b] + 10, dx[b] : dx[b] + 10]
        assert torch.equal(out[b], ref), b
    assert out.shape == x.shape and out.dtype == x.dtype


def test_random_crop_output_is_some_shift_of_the_input():
    x = _batch(b=6, size=8)
    p = 2
    out = A.random_crop(x, p, _gen(3))
    padded = F.pad(x, (p, p, p, p))
    for b in range(6):
        matches = [
            (i, j)
            for i in range(2 * p + 1)
            for j in range(2 * p + 1)
            if torch.equal(out[b], padded[b, :, i : i + 8, j : j + 8])
        ]
        assert matches, b
    assert not torch.equal(out, x)


def test_fused_crop_flip_equals_crop_then_flip():
    x = _batch(b=4)
    dy, dx = torch.tensor([0, 1, 8, 4]), torch.tensor([8, 2, 0, 4])
    flip = torch.tensor([True, False, True, False])
    fused = A._crop_flip_with_offsets(x, 4, dy, dx, flip)
    crop = A._crop_with_offsets(x, 4, dy, dx)
    ref = torch.where(flip.view(-1, 1, 1, 1), crop.flip(-1), crop)
    assert torch.equal(fused, ref)


# ----------------------------------------------------------------------------- single ops


@pytest.mark.parametrize("name", A.OP_NAMES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_every_op_keeps_shape_dtype_and_range(name, dtype):
    x = _batch(b=6).to(dtype)
    out = A.apply_op(x, name, 0.8, _gen())
    assert out.shape == x.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 255
    if name != "Identity":
        assert not torch.equal(out, x), name
    else:
        assert torch.equal(out, x)


def test_op_semantics():
    x = _batch(b=4)
    assert torch.equal(A.apply_op(x, "Invert"), 255 - x)
    post = A.apply_op(x, "Posterize", 1.0)  # 8 - 4 = 4 bits kept
    assert (post % 16 == 0).all()
    assert torch.equal(A.apply_op(x, "Posterize", 0.0), x)
    sol = A.apply_op(x, "Solarize", 0.5)  # threshold 127.5
    assert torch.equal(sol, torch.where(x >= 127.5, 255 - x, x))
    for name in ("Brightness", "Color", "Contrast", "Sharpness", "ShearX", "Rotate", "TranslateY"):
        assert torch.equal(A.apply_op(x, name, 0.0), x), name  # magnitude 0 = identity
    low = (x // 4 + 60).to(torch.uint8)  # values 60..123
    ac = A.apply_op(low, "AutoContrast")
    assert (ac.amin((2, 3)) == 0).all() and (ac.amax((2, 3)) == 255).all()
    eq = A.apply_op(low, "Equalize")
    assert eq.float().std() > low.float().std() * 1.5  # spread over the full range
    const = torch.full((2, 3, 8, 8), 90, dtype=torch.uint8)
    assert torch.equal(A.apply_op(const, "Equalize"), const)  # nothing to equalize
    assert torch.equal(A.apply_op(const, "AutoContrast"), const)


def test_translate_is_an_exact_pixel_shift():
    x = _batch(b=2, size=32).float()
    shift = 4.0
    frac = torch.full((2,), shift / (150.0 / 331.0 * 32))
    op = torch.full((2,), A.OP_INDEX["TranslateX"])
    sign = torch.tensor([1.0, -1.0])
    out = A._apply_ops(x, op, frac, sign, ("TranslateX",))
    assert torch.allclose(out[0, :, :, 4:], x[0, :, :, :-4], atol=1e-3)
    assert out[0, :, :, :4].abs().max() < 1e-3  # zero fill
    assert torch.allclose(out[1, :, :, :-4], x[1, :, :, 4:], atol=1e-3)


def test_where_path_matches_subset_path():
    """The CUDA code path (torch.where over the batch) and the CPU one (index subsets) agree."""
    x = _batch(b=32).float()
    g = _gen(2)
    op = torch.randint(0, len(A.OP_NAMES), (32,), generator=g)
    frac = torch.rand(32, generator=g)
    sign = torch.where(torch.rand(32, generator=g) < 0.5, -1.0, 1.0)
    by_subset = A._apply_ops(x, op, frac, sign, A.OP_NAMES, subset=True)
    by_where = A._apply_ops(x, op, frac, sign, A.OP_NAMES, subset=False)
    assert torch.allclose(by_subset, by_where, atol=1e-3)
    assert not torch.equal(by_subset, x)
    assert torch.equal(x, _batch(b=32).float())  # input not modified in place


def test_color_jitter_affine_erasing():
    x = _batch()
    for out in (
        A.color_jitter(x, 0.4, _gen()),
        A.random_affine(x, 15, 0.1, _gen()),
        A.random_erasing(x, 1.0, _gen()),
    ):
        assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)
    assert torch.equal(A.color_jitter(x, 0.0, _gen()), x)
    assert torch.equal(A.random_affine(x, 0, 0, _gen()), x)
    xf = A.normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    er = A.random_erasing(xf, 1.0, _gen())
    changed = (er != xf).any(1).flatten(1)  # every image got a box
    assert changed.any(1).all()
    area = changed.float().mean(1)
    assert (area > 0.005).all() and (area <= 0.5).all()
    assert torch.equal(A.random_erasing(xf, 0.0, _gen()), xf)


# ----------------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    "fn",
    [lambda x, g: A.autoaugment_cifar10(x, g), lambda x, g: A.rand_augment(x, 2, 9, g)],
    ids=["autoaugment", "randaugment"],
)
def test_policies_change_images_keep_shape_and_are_reproducible(fn):
    x = _batch(b=32)
    a, b, c = fn(x, _gen(1)), fn(x, _gen(1)), fn(x, _gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = (a != x).flatten(1).any(1)
    assert changed.float().mean() > 0.5  # most images got at least one op
    f = fn(x.float(), _gen(1))
    assert f.dtype == torch.float32 and f.min() >= 0 and f.max() <= 255


def test_policy_settings_are_checked():
    with pytest.raises(InputError, match="0..30"):
        A.rand_augment(_batch(), 2, 31)
    with pytest.raises(InputError, match="policy"):
        A.GpuAugment(AugConfig(policy="autoaug"), InputSpec(CIFAR10_MEAN, CIFAR10_STD, 32), 10)
    with pytest.raises(InputError, match=r"\[B, C, H, W\]"):
        A.random_crop(torch.zeros(3, 8, 8, dtype=torch.uint8), 2)
    with pytest.raises(InputError, match="unknown op"):
        A.apply_op(_batch(), "Blur")


def test_autoaugment_policy_table():
    assert len(A.CIFAR10_POLICY) == 25
    assert all(len(s) == 2 for s in A.CIFAR10_POLICY)
    names = {step[0] for sub in A.CIFAR10_POLICY for step in sub}
    assert names <= set(A.OP_NAMES) and "Invert" in names


# ----------------------------------------------------------------------------- MixUp / CutMix


def _const_batch(b=8, size=16):
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, size, size).clone()
    y = F.one_hot(torch.arange(b), b).float()
    return x, y


def test_cutmix_lambda_matches_pasted_area():
    x, y = _const_batch()
    for seed in range(5):
        out, ys = A.mixup_cutmix(x, y, 0.0, 1.0, 1.0, _gen(seed))
        assert torch.allclose(ys.sum(1), torch.ones(8))
        for b in range(8):
            partner = 7 - b
            own = (out[b] == b).float().mean()
            other = (out[b] == partner).float().mean()
            assert torch.isclose(own + other, torch.tensor(1.0))  # pixels pasted, not blended
            assert torch.isclose(ys[b, b], own, atol=1e-6)
            assert torch.isclose(ys[b, partner], other, atol=1e-6)


def test_mixup_blends_with_matching_lambda():
    x, y = _const_batch()
    out, ys = A.mixup_cutmix(x, y, 0.8, 0.0, 1.0, _gen(0))
    lam = ys[0, 0]
    assert 0 < lam < 1
    expected = lam * x + (1 - lam) * x.flip(0)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(ys.sum(1), torch.ones(8))
    # prob 0 / alphas 0: untouched
    out0, y0 = A.mixup_cutmix(x, y, 0.8, 1.0, 0.0, _gen(0))
    assert torch.equal(out0, x) and torch.equal(y0, y)


def test_mix_chooses_both_kinds_and_is_reproducible():
    x, y = _const_batch()
    kinds = set()
    for seed in range(12):
        out, ys = A.mixup_cutmix(x, y, 0.8, 1.0, 1.0, _gen(seed))
        blended = ((out[0] != 0) & (out[0] != 7)).any()
        kinds.add("mixup" if blended else "cutmix")
        again = A.mixup_cutmix(x, y, 0.8, 1.0, 1.0, _gen(seed))
        assert torch.equal(out, again[0]) and torch.equal(ys, again[1])
    assert kinds == {"mixup", "cutmix"}


def test_beta_and_gamma_samplers():
    for alpha in (0.5, 0.8, 2.0):
        g = A._sample_gamma(alpha, 20000, _gen(1), "cpu")
        assert (g > 0).all()
        assert abs(g.mean().item() - alpha) < 0.05 * max(1, alpha)
        assert abs(g.var().item() - alpha) < 0.1 * max(1, alpha)
    lams = torch.stack([A._sample_beta(1.0, _gen(s), "cpu") for s in range(400)])
    assert ((lams >= 0) & (lams <= 1)).all() and abs(lams.mean().item() - 0.5) < 0.05


# ----------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("preset", ["seed000", "fast", "seed003"])
def test_gpu_augment_pipeline(preset):
    p = get_preset(preset)
    spec = InputSpec(p.mean, p.std, 32)
    aug = A.GpuAugment(p.aug, spec, 10)
    x, y = _batch(b=16, size=32), torch.arange(16) % 10
    out, ys = aug(x, y, _gen(0))
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32
    assert ys.shape == (16, 10) and torch.allclose(ys.sum(1), torch.ones(16))
    out2, ys2 = aug(x, y, _gen(0))
    assert torch.equal(out, out2) and torch.equal(ys, ys2)
    out3, _ = aug(x, y, _gen(1))
    assert not torch.equal(out, out3)
    assert out.abs().mean() < 3  # normalized scale


def test_gpu_augment_one_hot_without_mix_and_resize_for_finetuning():
    spec = InputSpec((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 64)
    aug = A.GpuAugment(AugConfig(crop_padding=2, policy="randaugment", resize=64), spec, 5)
    x, y = _batch(b=4, size=16), torch.tensor([0, 1, 4, 2])
    out, ys = aug(x, y, _gen())
    assert out.shape == (4, 3, 64, 64)
    assert torch.equal(ys, F.one_hot(y, 5).float())
    assert out.min() >= -1.01 and out.max() <= 1.01
    with pytest.raises(InputError, match="labels"):
        aug(x, y[:3], _gen())


def test_eval_transform_normalizes_and_resizes():
    mean, std = CIFAR10_MEAN, CIFAR10_STD
    x = torch.stack([torch.full((32, 32), round(m * 255)) for m in mean]).to(torch.uint8)[None]
    out = A.eval_transform(x.expand(2, -1, -1, -1), InputSpec(mean, std, 32))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() < 0.01
    big = A.eval_transform(_batch(b=2, size=32), InputSpec(mean, std, 224))
    assert big.shape == (2, 3, 224, 224) and big.dtype == torch.float32
    white = A.eval_transform(
        torch.full((1, 3, 8, 8), 255, dtype=torch.uint8), InputSpec(mean, std, 8)
    )
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))


def test_resize_modes():
    x = _batch(b=2, size=8)
    up = A.resize(x, 16, "bicubic")
    assert up.shape == (2, 3, 16, 16) and up.dtype == torch.uint8
    down = A.resize(x.float(), 4)
    assert down.shape == (2, 3, 4, 4) and down.dtype == torch.float32
    with pytest.raises(InputError):
        A.resize(x, 16, "nearest-ish")


@pytest.mark.gpu
def test_pipeline_on_cuda_is_reproducible():
    p = get_preset("fast")
    aug = A.GpuAugment(p.aug, InputSpec(p.mean, p.std, 32), 10)
    x = _batch(b=64, size=32).cuda()
    y = (torch.arange(64) % 10).cuda()
    g1 = torch.Generator(device="cuda").manual_seed(0)
    g2 = torch.Generator(device="cuda").manual_seed(0)
    a = aug(x, y, g1)
    A.autoaugment_cifar10(x, g1)  # first calls copy their small constants to the GPU once
    torch.cuda.set_sync_debug_mode("error")  # the training path must never wait for the GPU
    try:
        b = aug(x, y, g2)
        A.autoaugment_cifar10(x, g2)
        A.eval_transform(x, InputSpec(p.mean, p.std, 64))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert a[0].device.type == "cuda" and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # the CUDA (torch.where) op path agrees with the CPU (subset) path
    g = torch.Generator().manual_seed(3)
    op = torch.randint(0, len(A.OP_NAMES), (64,), generator=g)
    frac, sign = torch.rand(64, generator=g), torch.ones(64)
    cpu = A._apply_ops(x.cpu().float(), op, frac, sign, A.OP_NAMES)
    gpu = A._apply_ops(x.float(), op.cuda(), frac.cuda(), sign.cuda(), A.OP_NAMES)
    assert (cpu - gpu.cpu()).abs().max() < 1.0


def test_policy_tables_equal_torchvisions():
    """Our AutoAugment CIFAR-10 table, RandAugment op set and op ranges are torchvision's."""
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy, RandAugment

    tv = AutoAugment(AutoAugmentPolicy.CIFAR10)
    ours = [tuple((n, p, lvl) for n, p, lvl in sub) for sub in A.CIFAR10_POLICY]
    theirs = [tuple(sub) for sub in tv._get_policies(AutoAugmentPolicy.CIFAR10)]
    assert ours == theirs
    # RandAugment: the same ops, and at every level the same argument as torchvision's space
    space = RandAugment()._augmentation_space(31, (32, 32))
    assert set(A.RANDAUGMENT_OPS) == set(space)
    sign = torch.ones(1)
    for name, (values, _signed) in space.items():
        for level in (0, 9, 30):
            want = float(values[level]) if values.ndim else 0.0
            got = float(A._op_value(name, torch.tensor([level / 30.0]), sign, 32, 32)[0])
            if name in ("Brightness", "Color", "Contrast", "Sharpness"):
                got -= 1.0  # ours is the blend factor, torchvision's the offset from 1
            if name in ("Identity", "AutoContrast", "Equalize"):
                continue  # no magnitude
            if name == "Posterize":
                want = float(int(values[level]))
            assert got == pytest.approx(want, abs=1e-4), (name, level)


# ----------------------------------------------------------------------------- draws + pure function


def _reference_pipeline(a, spec, x, y, g):
    """The pipeline as the single ops compose it, each drawing from ``g`` as it goes."""
    B = x.shape[0]
    if a.crop_padding > 0 or a.flip:
        p = int(a.crop_padding)
        d = torch.randint(2 * p + 1, (2, B), generator=g) if p else torch.zeros(2, B).long()
        flip = (torch.rand(B, generator=g) < 0.5) if a.flip else None
        x = A._crop_flip_with_offsets(x, p, d[0], d[1], flip)
    x = x.float()
    if a.policy == "autoaugment":
        x = A.autoaugment_cifar10(x, g)
    elif a.policy == "randaugment":
        x = A.rand_augment(x, a.ra_ops, a.ra_magnitude, g)
    x = A.color_jitter(x, a.color_jitter, g)
    x = A.random_affine(x, a.rotate_degrees, a.translate, g)
    x = A.random_erasing(A.normalize(x, spec.mean, spec.std), a.erasing, g)
    y_soft = F.one_hot(y, 10).float()
    if a.mixup_alpha > 0 or a.cutmix_alpha > 0:
        return A.mixup_cutmix(x, y_soft, a.mixup_alpha, a.cutmix_alpha, a.mix_prob, g)
    return x, y_soft


JITTERY = AugConfig(color_jitter=0.4, rotate_degrees=10, translate=0.1, mixup_alpha=0.2)


@pytest.mark.parametrize("aug", ["seed000", "fast", JITTERY], ids=["seed000", "fast", "jitter"])
def test_pipeline_is_draws_up_front_then_a_pure_function_bit_equal_to_the_ops(aug):
    """Every random number is drawn before any image is touched; the rest is a function of
    (images, labels, draws) that equals the single ops composed, bit for bit, on both paths."""
    a = get_preset(aug).aug if isinstance(aug, str) else aug
    spec = InputSpec(CIFAR10_MEAN, CIFAR10_STD, 32)
    pipe = A.GpuAugment(a, spec, 10)
    x, y = _batch(b=24, size=32), torch.arange(24) % 10
    want = _reference_pipeline(a, spec, x, y, _gen(5))
    draws = pipe.draw(x, _gen(5))
    torch.manual_seed(0)
    for subset in (None, False):  # the CPU (image subsets) and the CUDA (torch.where) paths
        got = pipe.apply(x, y, draws, subset=subset)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(0).get_state())  # no RNG used
    assert all(torch.equal(u, v) for u, v in zip(pipe(x, y, _gen(5)), want))


def test_fast_augmentation_compiles_to_one_graph_of_few_kernels():
    """`fast`'s augmentation (RandAugment x2, erasing, MixUp/CutMix) traces as one graph with
    no break and compiles (CPU inductor) to at most 80 kernels, from hundreds of eager ops."""
    import re

    import torch._dynamo
    from torch._inductor import metrics
    from torch._inductor.utils import run_and_get_code
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            CountOps.n += 1
            return func(*args, **(kwargs or {}))

    p = get_preset("fast")
    pipe = A.GpuAugment(p.aug, InputSpec(p.mean, p.std, 32), 10)
    x, y = _batch(b=8, size=32), torch.arange(8) % 10
    draws = pipe.draw(x, _gen(1))
    with CountOps():
        eager = pipe.apply(x, y, draws, subset=False)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(pipe.apply)(x, y, draws, subset=False)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    torch._dynamo.reset()
    metrics.reset()
    assert pipe.compile(log=pytest.fail)
    out, codes = run_and_get_code(pipe.compiled, x, y, draws)
    launched = "\n".join(c[c.index("def call(") :] for c in codes)
    fallbacks = len(re.findall(r"(?:extern_kernels|aten)\.\w+(?:\.\w+)?\(", launched))
    kernels = metrics.generated_kernel_count + fallbacks
    print(f"fast augmentation, batch 8: {CountOps.n} eager ops -> {kernels} kernels compiled")
    assert CountOps.n > 300 and kernels <= 80
    assert torch.equal(out[1], eager[1])
    assert (out[0] - eager[0]).abs().max() < 0.05  # rounding steps may land one level apart
    assert (out[0] - eager[0]).abs().mean() < 1e-3
    again = pipe(x, y, _gen(1))  # through __call__: draws + the compiled graph, no recompile
    assert torch.equal(again[0], out[0]) and torch.equal(again[1], out[1])


def test_a_compile_that_fails_on_first_use_falls_back_to_eager(monkeypatch):
    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler (pretend)")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    p = get_preset("seed000")
    pipe = A.GpuAugment(p.aug, InputSpec(p.mean, p.std, 32), 10)
    logs = []
    assert pipe.compile(log=logs.append)
    x, y = _batch(b=8, size=32), torch.arange(8) % 10
    out = pipe(x, y, _gen(3))
    want = pipe.apply(x, y, pipe.draw(x, _gen(3)))
    assert torch.equal(out[0], want[0]) and torch.equal(out[1], want[1])
    assert pipe.compiled is None and len(logs) == 1 and "augmenting eagerly" in logs[0]
