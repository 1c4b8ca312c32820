"""Oracle tests of `taf.corruptions` against the numpy reference `imagecorruptions` (ImageNet-C's code as a package).

`imagecorruptions` 1.1.2 needs two patches to import and run with current packages, both applied only inside
the `ic` fixture (undone afterwards):
- it does `from pkg_resources import resource_filename` (only for the frost images, unused here), and setuptools
  >= 81 no longer ships `pkg_resources`: if that import fails we put a stand-in module into `sys.modules` whose
  `resource_filename(pkg, path)` joins the package's directory and `path`;
- its `gaussian_blur` calls `skimage.filters.gaussian(..., multichannel=True)`, a keyword scikit-image removed
  (0.21+): we replace the `gaussian` it imported by a wrapper that turns `multichannel=True` into `channel_axis=-1`.
The oracle tests skip (with the reason) when imagecorruptions, scikit-image, opencv or scipy is missing.

Tolerances (values in [0, 1]): deterministic corruptions max |torch - oracle| <= 1e-5 per pixel (measured <= 2e-6,
float32 vs float64); random ones: mean and std of (corrupted - clean) within 3e-3 (noises) / 1.5e-2 (snow), and,
fed the same random numbers, gaussian/speckle noise within 1e-5, and snow within 1/255 (the rounding of the snow
layer to 1/255, float32 vs float64) except near the border (see `test_snow_same_draws_exact`).
"""
import functools, importlib.util, os, sys, types
import numpy as np
import pytest
import torch
import taf.corruptions as tc
from taf.corruptions import CORRUPTIONS

DETERMINISTIC = ('gaussian_blur', 'defocus_blur', 'zoom_blur', 'brightness')
RANDOM = ('gaussian_noise', 'impulse_noise', 'speckle_noise', 'snow')
SEVERITIES = (1, 2, 3, 4, 5)


@pytest.fixture(scope='module')
def ic():
    "`imagecorruptions.corruptions`, patched to import and run (see the module docstring), or a skip."
    for mod, pkg in (('imagecorruptions', 'imagecorruptions'), ('skimage', 'scikit-image'), ('cv2', 'opencv-python'),
                     ('scipy', 'scipy')):
        if importlib.util.find_spec(mod) is None: pytest.skip(f"oracle tests need {pkg} (pip install {pkg})")
    mp = pytest.MonkeyPatch()
    try: import pkg_resources  # noqa: F401
    except ImportError:
        root = importlib.util.find_spec('imagecorruptions').submodule_search_locations[0]
        shim = types.ModuleType('pkg_resources')
        shim.resource_filename = lambda pkg, path: os.path.join(root, path)
        mp.setitem(sys.modules, 'pkg_resources', shim)
    import warnings
    with warnings.catch_warnings():   # its `from scipy.ndimage.interpolation import ...` is deprecated
        warnings.simplefilter('ignore', DeprecationWarning)
        import imagecorruptions.corruptions as icc
    from skimage.filters import gaussian as sk_gaussian
    def gaussian(image, sigma=1, multichannel=None, **kw):
        if multichannel is not None: kw['channel_axis'] = -1 if multichannel else None
        return sk_gaussian(image, sigma=sigma, **kw)
    mp.setattr(icc, 'gaussian', gaussian)
    yield icc
    mp.undo()


def images(n=2, size=224, seed=0):
    "n uint8 test images [n, size, size, 3]: oblique sine gratings, flat rectangles (edges), mild noise."
    rng = np.random.default_rng(seed); yy, xx = np.mgrid[0:size, 0:size] / size; out = []
    for _ in range(n):
        img = 0.5 + 0.3 * np.sin(2 * np.pi * (xx * rng.uniform(1, 4) + yy * rng.uniform(1, 4)))[..., None] * rng.uniform(.3, 1, 3)
        for _ in range(6):
            y0, x0 = rng.integers(0, size, 2); h, w = rng.integers(size // 10, size // 3, 2)
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, 3)
        img = img + 0.04 * rng.normal(size=img.shape)
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return np.stack(out)


def as_clips(imgs): return torch.from_numpy(imgs / 255.).float().permute(0, 3, 1, 2)[:, None]  # [n, 1, 3, H, W]
def as_images(x): return x[:, 0].permute(0, 2, 3, 1).double().numpy()                         # [n, H, W, 3]
def oracle(ic, name, imgs, sev): return np.stack([getattr(ic, name)(im, sev) / 255. for im in imgs])


@pytest.fixture(scope='module')
def imgs224(): return images(2, 224)


# ---- deterministic corruptions: frame by frame, max abs error ----

@pytest.mark.parametrize('name', DETERMINISTIC)
def test_deterministic_match_oracle_224(ic, imgs224, name):
    for sev in SEVERITIES:
        err = np.abs(as_images(CORRUPTIONS[name](as_clips(imgs224[:1]), sev)) - oracle(ic, name, imgs224[:1], sev)).max()
        assert err <= 1e-5, f"{name} severity {sev}: max |torch - imagecorruptions| = {err:.2e} > 1e-5"


@pytest.mark.parametrize('name', ('gaussian_blur', 'defocus_blur', 'zoom_blur'))
def test_unscaled_blurs_match_oracle_64(ic, name):
    "At 64x64 with ref_size=None the blurs use ImageNet-C's pixel sizes unchanged, as imagecorruptions does."
    imgs = images(2, 64, seed=1)
    kw = {} if name == 'zoom_blur' else {'ref_size': None}
    for sev in SEVERITIES:
        err = np.abs(as_images(CORRUPTIONS[name](as_clips(imgs), sev, **kw)) - oracle(ic, name, imgs, sev)).max()
        assert err <= 1e-5, f"{name} severity {sev} at 64x64: max error {err:.2e}"


def test_disk_kernel_matches_cv2(ic):
    for r, a in tc.DEFOCUS:
        ref, mine = ic.disk(r, a), tc.disk_kernel(r, a).numpy()
        o = (ref.shape[0] - mine.shape[0]) // 2
        full = np.zeros(ref.shape); full[o:o + mine.shape[0], o:o + mine.shape[0]] = mine
        assert np.abs(full - ref).max() < 1e-8


# ---- random corruptions: in distribution, and exactly when fed the same random numbers ----

@pytest.mark.parametrize('name', RANDOM)
def test_random_match_oracle_in_distribution(ic, imgs224, name, monkeypatch):
    "Mean and std of (corrupted - clean) over two 224x224 images (snow: two draws each)."
    import skimage.util
    clean, x, reps = imgs224 / 255., as_clips(imgs224), 2 if name == 'snow' else 1
    tol = 1.5e-2 if name == 'snow' else 3e-3
    rn = skimage.util.random_noise
    for sev in SEVERITIES:
        ref, mine = [], []
        for rep in range(reps):
            np.random.seed(rep)   # imagecorruptions draws from numpy's global generator ...
            monkeypatch.setattr(ic.sk.util, 'random_noise', functools.partial(rn, rng=rep))  # ... skimage from its own
            ref.append(oracle(ic, name, imgs224, sev) - clean)
            mine.append(as_images(CORRUPTIONS[name](x, sev, torch.Generator().manual_seed(rep))) - clean)
        ref, mine = np.stack(ref), np.stack(mine)
        for stat in (np.mean, np.std):
            d = abs(stat(ref) - stat(mine))
            assert d < tol, f"{name} severity {sev}: {stat.__name__} of the change {stat(mine):.4f} vs oracle {stat(ref):.4f}"


@pytest.mark.parametrize('name', ('gaussian_noise', 'speckle_noise'))
def test_noise_same_draws_exact(ic, imgs224, name, monkeypatch):
    z = np.random.default_rng(0).normal(size=imgs224.shape[1:])
    monkeypatch.setattr(np.random, 'normal', lambda size=None, scale=1.0, loc=0.0: loc + scale * z)
    zt = torch.from_numpy(z).float().permute(2, 0, 1)[None, None]
    monkeypatch.setattr(tc, '_draw', lambda kind, shape, g, like, dtype=None: zt.expand(shape).to(like))
    for sev in SEVERITIES:
        err = np.abs(as_images(CORRUPTIONS[name](as_clips(imgs224[:1]), sev)) - oracle(ic, name, imgs224[:1], sev)).max()
        assert err <= 1e-5, f"{name} severity {sev}: {err:.2e}"


def test_snow_same_draws_exact(ic, imgs224, monkeypatch):
    """Same normal layer and wind angle: equal away from the border, up to the rounding of the layer to 1/255.

    Near the border they differ: imagecorruptions motion-blurs the zoomed layer before trimming it to H x W (its
    `clipped_zoom` returns the untrimmed zoom, e.g. 225 x 225), ImageNet-C (and taf) trims first, so the repeated
    edge pixels differ within 2 rho + 1 = 25 pixels of the border."""
    H, b = imgs224.shape[1], 26
    z = np.random.default_rng(0).normal(size=(H, H))
    for angle in (-120.0, -60.0):
        monkeypatch.setattr(np.random, 'normal', lambda size=None, loc=0.0, scale=1.0: loc + scale * z)
        monkeypatch.setattr(np.random, 'uniform', lambda low=0.0, high=1.0, size=None: angle)
        def draw(kind, shape, g, like, dtype=None):
            if kind == 'randn': return torch.from_numpy(z).to(like.dtype).expand(shape)
            return torch.full(shape, (angle + 135) / 90, dtype=dtype or like.dtype)
        monkeypatch.setattr(tc, '_draw', draw)
        for sev in (SEVERITIES if angle == -60.0 else (3,)):
            d = np.abs(as_images(tc.snow(as_clips(imgs224[:1]), sev)) - oracle(ic, 'snow', imgs224[:1], sev))[0]
            inner = d[b:-b, b:-b].max()
            assert inner <= 1 / 255 + 1e-5 and d.mean() < 2e-3, f"snow severity {sev}, angle {angle}: {inner:.2e}/{d.mean():.2e}"


def test_motion_blur_matches_oracle(ic):
    layer = np.random.default_rng(3).uniform(size=(40, 48))
    for angle in (-135.0, -100.0, -45.0, 30.0):
        ref = ic._motion_blur(layer, radius=6, sigma=3, angle=angle)
        mine = tc.motion_blur_layer(torch.from_numpy(layer)[None], 6, 3, torch.tensor([angle]))[0].numpy()
        assert np.abs(ref - mine).max() < 1e-10


# ---- independent of the oracle: clip consistency, seeds, devices ----

def test_snow_is_clip_consistent_and_seeded():
    x = torch.rand(3, 1, 3, 32, 32).expand(3, 4, 3, 32, 32)
    y = tc.snow(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, 0], y[:, 3]) and not torch.equal(y[0], y[1])
    assert torch.equal(y, tc.snow(x, 3, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize('name', ('gaussian_noise', 'impulse_noise', 'speckle_noise'))
def test_noise_per_frame_or_frozen(name):
    x = torch.full((2, 4, 3, 16, 16), .5)
    fresh = CORRUPTIONS[name](x, 5, torch.Generator().manual_seed(0))
    frozen = CORRUPTIONS[name](x, 5, torch.Generator().manual_seed(0), per_frame=False)
    assert not torch.equal(fresh[:, 0], fresh[:, 1])
    assert torch.equal(frozen[:, 0], frozen[:, 3]) and not torch.equal(frozen[0], frozen[1])


@pytest.mark.parametrize('name', list(CORRUPTIONS))
def test_batch_dtype_and_range(name):
    x = torch.rand(2, 3, 3, 36, 44, dtype=torch.float64)   # non-square frames, float64
    y = CORRUPTIONS[name](x, 3, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and 0 <= y.min() and y.max() <= 1
    # clips of a batch are corrupted independently of their neighbours (deterministic ones: exactly)
    if name in DETERMINISTIC: assert torch.allclose(CORRUPTIONS[name](x[1:], 3), y[1:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('name', list(CORRUPTIONS))
def test_cuda_matches_cpu(name):
    x = torch.rand(2, 3, 3, 64, 64)
    cpu = CORRUPTIONS[name](x, 3, torch.Generator().manual_seed(0))
    gpu = CORRUPTIONS[name](x.cuda(), 3, torch.Generator().manual_seed(0))     # CPU generator, GPU batch
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    y = CORRUPTIONS[name](x.cuda(), 3, torch.Generator('cuda').manual_seed(0))  # generator on the GPU
    assert y.is_cuda and y.shape == x.shape
