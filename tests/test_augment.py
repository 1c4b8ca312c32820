"""Tests of `taf.augment` beyond the notebook's examples: the label weights equal the pixel weights for every
method, setting, dtype and clip shape; the geometry of each method's box; the hook contract the trainer relies on
(`fn(x, y, num_classes, generator) -> (x, y_soft)` usable by `F.cross_entropy`); seeds and devices."""
import pytest
import torch
import torch.nn.functional as F
from taf.augment import AUGMENTATIONS, one_hot, soft_cross_entropy, rand_box, box_fraction

NAMES = list(AUGMENTATIONS)
SETTINGS = ({}, {'per_sample': True}, {'prob': 0.5}, {'prob': 0.5, 'per_sample': True}, {'alpha': 0.2})


def constant_clips(B, T=8, C=3, H=16, W=16, dtype=torch.float64):
    "Clip i is the constant v_i (v spread over [0, 1]); with label i, mean(mixed clip) must equal y_soft @ v."
    v = torch.linspace(0, 1, B, dtype=dtype)
    return v.view(B, 1, 1, 1, 1).expand(B, T, C, H, W).clone(), v


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('shape', [(6, 8, 3, 16, 16), (5, 4, 1, 12, 20), (3, 1, 3, 7, 9)])
def test_label_weight_equals_pixel_weight(name, shape):
    B, T, C, H, W = shape
    x, v = constant_clips(B, T, C, H, W)
    for kw in SETTINGS:
        for seed in range(3):
            xm, ym = AUGMENTATIONS[name](x, torch.arange(B), B, torch.Generator().manual_seed(seed), **kw)
            assert xm.shape == x.shape and xm.dtype == x.dtype and ym.shape == (B, B)
            torch.testing.assert_close(xm.mean((1, 2, 3, 4)), ym.double() @ v, atol=1e-6, rtol=0)
            torch.testing.assert_close(ym.sum(1), torch.ones(B), atol=1e-6, rtol=0)
            assert (ym >= 0).all()


@pytest.mark.parametrize('name', NAMES)
def test_zeros_and_ones(name):
    "The issue's check: x_a all zeros, x_b all ones -> mean of the mixed clip = label weight of b (float32)."
    x = torch.cat([torch.zeros(1, 8, 3, 32, 32), torch.ones(1, 8, 3, 32, 32)])
    for seed in range(10):
        xm, ym = AUGMENTATIONS[name](x, torch.tensor([0, 1]), 2, torch.Generator().manual_seed(seed), perm=torch.tensor([1, 0]))
        torch.testing.assert_close(xm.mean((1, 2, 3, 4)), ym[:, 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize('name', NAMES)
def test_soft_targets_compose(name):
    "Soft targets as input (e.g. a second augmentation) keep label weights = pixel weights."
    x, v = constant_clips(6)
    x1, y1 = AUGMENTATIONS['mixup'](x, torch.arange(6), 6, torch.Generator().manual_seed(0))
    x2, y2 = AUGMENTATIONS[name](x1, y1, 6, torch.Generator().manual_seed(1))
    torch.testing.assert_close(x2.mean((1, 2, 3, 4)), y2.double() @ v, atol=1e-6, rtol=0)


def changed(x, xm): return (xm != x).any(2)   # [B, T, H, W]: voxels that came from the partner


def random_clips(B=6, T=8, H=24, W=24, seed=0):
    return torch.rand(B, T, 3, H, W, generator=torch.Generator().manual_seed(seed))


def test_cutmix_same_box_in_every_frame():
    x = random_clips()
    for seed in range(10):
        m = changed(x, AUGMENTATIONS['cutmix'](x, torch.arange(6), 6, torch.Generator().manual_seed(seed))[0])
        assert (m == m[:, :1]).all()


def test_frame_cutmix_whole_frames():
    x = random_clips()
    for seed in range(10):
        m = changed(x, AUGMENTATIONS['frame_cutmix'](x, torch.arange(6), 6, torch.Generator().manual_seed(seed))[0])
        assert (m.flatten(2).all(2) | ~m.flatten(2).any(2)).all()    # each frame all-partner or untouched


def test_cube_cutmix_is_a_box():
    x = random_clips()
    for seed in range(10):
        xm, ym = AUGMENTATIONS['cube_cutmix'](x, torch.arange(6), 6, torch.Generator().manual_seed(seed))
        for m in changed(x, xm):
            if not m.any(): continue
            idx = m.nonzero()
            lo, hi = idx.min(0).values, idx.max(0).values + 1
            assert m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].all() and m.sum() == (hi - lo).prod()


def test_box_geometry_follows_kim_et_al():
    "Box side floor(L (1-lam)^(1/d)), centred on a uniform point, clipped; |box| never exceeds 1-lam."
    lam = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kind in ('spatial', 'frame', 'cube'):
        box = rand_box((8, 32, 32), lam, kind, torch.Generator().manual_seed(1))
        assert (box_fraction(box, (8, 32, 32)) <= 1 - lam + 1e-12).all()
        assert (box[..., 0] >= 0).all() and (box[..., 1] <= torch.tensor([8, 32, 32])).all()
    # lam = 0: a full-size box around a random centre, clipped to the frame: it covers at least a quarter
    whole = rand_box((8, 32, 32), torch.zeros(500, dtype=torch.float64), 'spatial', torch.Generator().manual_seed(0))
    f = box_fraction(whole, (8, 32, 32))
    assert (f >= 0.25).all() and (f <= 1).all()


def test_hook_contract_with_cross_entropy():
    "What the trainer does: positional call, then F.cross_entropy with the soft targets; gradients flow to x."
    x = random_clips(4, 4, 8, 8).requires_grad_()
    logits_w = torch.randn(4 * 3 * 8 * 8, 5, generator=torch.Generator().manual_seed(0))
    for fn in AUGMENTATIONS.values():
        xm, ym = fn(x, torch.tensor([0, 1, 2, 3]), 5, torch.Generator().manual_seed(0))
        logits = xm.flatten(1) @ logits_w
        loss = F.cross_entropy(logits, ym)
        torch.testing.assert_close(loss, soft_cross_entropy(logits, ym))
        torch.testing.assert_close(loss, -(ym * logits.log_softmax(1)).sum(1).mean())
        x.grad = None; loss.backward(); assert x.grad is not None


def test_seeds_and_prob_zero():
    x = random_clips()
    for fn in AUGMENTATIONS.values():
        a, b = (fn(x, torch.arange(6), 6, torch.Generator().manual_seed(3)) for _ in range(2))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        xm, ym = fn(x, torch.arange(6), 6, torch.Generator().manual_seed(3), prob=0.0)
        assert torch.equal(xm, x) and torch.equal(ym, one_hot(torch.arange(6), 6))
        fn(x, torch.arange(6), 6)   # generator=None: torch's global generator


def test_errors_name_the_problem():
    x = random_clips(2, 2, 4, 4)
    for fn in AUGMENTATIONS.values():
        with pytest.raises(ValueError, match=r'\[B, T, C, H, W\]'): fn(x[0], torch.arange(2), 2)
        with pytest.raises(ValueError, match='labels'): fn(x, torch.arange(3), 3)
        with pytest.raises(ValueError, match='prob'): fn(x, torch.arange(2), 2, prob=1.5)
        with pytest.raises(ValueError, match='alpha'): fn(x, torch.arange(2), 2, alpha=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('name', NAMES)
def test_cuda(name):
    x = random_clips()
    cpu = AUGMENTATIONS[name](x, torch.arange(6), 6, torch.Generator().manual_seed(0))
    gpu = AUGMENTATIONS[name](x.cuda(), torch.arange(6).cuda(), 6, torch.Generator().manual_seed(0))  # CPU generator
    assert gpu[0].is_cuda and torch.allclose(gpu[0].cpu(), cpu[0]) and torch.allclose(gpu[1].cpu(), cpu[1])
    xm, ym = AUGMENTATIONS[name](x.cuda(), torch.arange(6).cuda(), 6, torch.Generator('cuda').manual_seed(0))
    assert xm.is_cuda and ym.is_cuda
