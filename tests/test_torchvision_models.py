"""torchvision's video models in TAF (issue 24): the per-frame maps of their CAM layers put each frame where it
belongs (token order included), `taf_loss` and the trainer run on all six, dual norms and checkpoints round-trip."""
import copy, math

import pytest
import torch

from taf.cam import attach, forward_features, frame_cams
from taf.config import TrainConfig
from taf.dualbn import convert_dual_bn, dual_bns, is_dual
from taf.methods import taf_loss
from taf.models import TORCHVISION_ARCHS, create_model, mvit_grid
from taf.synthetic import SyntheticVideos
from taf.train import load_model, train

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


# ---- which frame a time step holds: exact at layers with a local receptive field in time ------------------------
def changed_steps(model, x, k):
    "Time steps of `forward_features`' per-step maps that change when only frame `k` of `x` changes."
    x2 = x.clone()
    x2[:, k] = torch.rand(x.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(100 + k))
    with torch.no_grad(): f1, f2 = forward_features(model, x)[1], forward_features(model, x2)[1]
    return set(torch.nonzero((f1 - f2).abs().amax((0, 2, 3, 4)) > 1e-6).flatten().tolist())


@pytest.fixture(scope='module')
def clip16(): return torch.rand(1, 16, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize('k', [0, 5, 6, 15])
def test_swin_tubelets_hold_their_two_frames(clip16, k):
    "Swin3D's patch embedding (2x4x4 tubelets, output [B, T', h, w, C]): frame k is in step k // 2 only."
    m = attach(create_model('swin3d_t', 4, 16).eval(), 'net.patch_embed', 'thwc')
    assert changed_steps(m, clip16, k) == {k // 2}


@pytest.mark.parametrize('k', [0, 6, 14])
def test_mvit_tokens_time_major_and_the_patch_major_reading_fails(clip16, k):
    "MViT's tokens after its patch embedding (kernel 3, stride 2 in time): even frame k is in step k / 2 only;"
    "reading the same tokens patch-major (mmaction2's TimeSformer order) spreads frame k over every step."
    m = attach(create_model('mvit_v2_s', 4, 16).eval(), 'net.blocks.0.norm1', 'tokens', mvit_grid, cls_tokens=1)
    assert changed_steps(m, clip16, k) == {k // 2}
    wrong = attach(m, 'net.blocks.0.norm1', 'tokens', mvit_grid, cls_tokens=1, token_order='hwt')
    assert changed_steps(wrong, clip16, k) == set(range(8))


@pytest.mark.parametrize('k', [0, 7])
def test_r2plus1d_stem_sees_neighbouring_frames(clip16, k):
    "R(2+1)D's stem (a 3x1x1 temporal conv, stride 1, output [B, C, T, h, w]): frame k reaches steps k-1..k+1."
    m = attach(create_model('r2plus1d_18', 4, 16).eval(), 'net.stem')
    assert changed_steps(m, clip16, k) == {t for t in (k - 1, k, k + 1) if 0 <= t < 16}


# ---- TAF's objective on every model -----------------------------------------------------------------------------
@pytest.mark.parametrize('arch', TORCHVISION_ARCHS)
def test_taf_loss_on_every_torchvision_model(arch):
    "Eq. 7 with the TA attack of eq. 6 (N=2 of 16 frames): finite, x^K within budget, gradients on both paths."
    torch.manual_seed(0)
    model = convert_dual_bn(create_model(arch, 4, 16)).train()
    x, y = torch.rand(2, 16, 3, 32, 32), torch.tensor([0, 3])
    out = taf_loss(model, x, y, n_nonkey=2, eps=8 / 255, step_size=4 / 255)
    assert math.isfinite(out.loss.item()) and out.adv.item() > 0
    d = (out.x_adv - x).abs()
    assert d.max() <= 8 / 255 + 1e-6 and d.max() > 0
    out.loss.backward()
    assert all(dn.main.weight.grad is not None and dn.aux.weight.grad is not None for dn in dual_bns(model))
    cam = frame_cams(model, x, y)
    assert cam.shape[:2] == (2, 16) and cam.amin() >= 0 and torch.isfinite(cam).all()


# ---- the trainer: baseline, then TAF fine-tuning from it --------------------------------------------------------
TINY = dict(preset='small', num_classes=4, num_frames=8, size=32, train_per_class=2, val_per_class=1)


@pytest.mark.parametrize('arch', TORCHVISION_ARCHS)
def test_trainer_baseline_then_taf(tmp_path, arch):
    data = SyntheticVideos('train', **TINY), SyntheticVideos('val', **TINY)
    cfg = dict(dataset='synthetic', synthetic=TINY, num_frames=8, arch=arch, epochs=1, batch_size=4, lr=0.01,
               workers=0, progress=False)
    base = train(TrainConfig(**cfg, out_dir=str(tmp_path / 'base')), train_ds=data[0], val_ds=data[1])
    res = train(TrainConfig(**cfg, method='taf', init=base['checkpoint'], n_nonkey=2, out_dir=str(tmp_path / 'taf')),
                train_ds=data[0], val_ds=data[1])
    model = load_model(res['checkpoint'], dual=True)
    assert is_dual(model) and model.arch == arch and not is_dual(load_model(res['checkpoint']))
    assert (arch in ('swin3d_t', 'mvit_v2_s')) == any(type(d).__name__ == 'DualLayerNorm' for d in dual_bns(model))
    with torch.no_grad(): logits = model.eval()(torch.stack([data[1][i][0] for i in range(2)]))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
