"""Tests of `taf.cam` and `taf.attack` that do not fit the notebooks: autocast (bf16) double backprop,
the trainer's reuse of its clean forward in training mode (batch norm, dual batch norm), a model with
temporal mixing under gradcheck, label-rule statistics, and the real `taf.models` when available."""
import copy
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from taf.cam import (forward_features, frame_cams, cams_from_forward, cam_loss, normalize_cam,
                     temporal_cam, nonkey_frames, temporal_entropy)
from taf.attack import attack_targets, temporal_attack, ce_attack, noise_augment, preserved_buffers

EPS, BETA = 64 / 255, 32 / 255


class ShiftNet(nn.Module):
    "Tiny TSM-like 2D model: conv -> BN -> ReLU -> temporal shift -> conv (cam_layer) -> mean -> fc."
    def __init__(self, num_classes=4, num_frames=4, width=6, dual=False):
        super().__init__()
        self.num_classes, self.num_frames = num_classes, num_frames
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.cam_layer = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, stride=2), nn.BatchNorm2d(width))
        self.fc = nn.Linear(width, num_classes)

    def frames_from_cam(self, f): return f.view(-1, self.num_frames, *f.shape[1:])

    def shift(self, f):
        f = self.frames_from_cam(f)
        c = f.shape[2] // 3
        out = torch.cat([torch.cat([f[:, 1:, :c], torch.zeros_like(f[:, :1, :c])], 1),
                         torch.cat([torch.zeros_like(f[:, :1, c:2 * c]), f[:, :-1, c:2 * c]], 1),
                         f[:, :, 2 * c:]], 2)
        return out.flatten(0, 1)

    def forward(self, x):
        f = self.cam_layer(self.shift(self.stem(x.flatten(0, 1))))
        return self.fc(self.frames_from_cam(f).mean((1, 3, 4)))


class Net3D(nn.Module):
    "A 3D model: cam_layer outputs [B, C, T, h, w], frames_from_cam permutes to [B, T, C, h, w]."
    def __init__(self, num_classes=3, num_frames=4):
        super().__init__()
        self.num_classes, self.num_frames = num_classes, num_frames
        self.cam_layer = nn.Conv3d(3, 5, (3, 1, 1), padding=(1, 0, 0))
        self.fc = nn.Linear(5, num_classes)

    def frames_from_cam(self, f): return f.permute(0, 2, 1, 3, 4)

    def forward(self, x): return self.fc(self.cam_layer(x.transpose(1, 2)).mean((2, 3, 4)))


def clips(B=4, T=4, H=8, seed=0, dtype=torch.float32):
    return torch.rand(B, T, 3, H, H, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def buffers(m): return {k: v.clone() for k, v in m.named_buffers()}


def assert_same_buffers(m, saved):
    for k, v in m.named_buffers(): assert torch.equal(v, saved[k]), k


def in_budget(x_adv, x, eps=EPS):
    return (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


# ---------------------------------------------------------------- CAM on models
def test_forward_features_keeps_logits_and_maps_3d():
    for net in (ShiftNet().eval(), Net3D()):
        x = clips()
        logits, feats = forward_features(net, x)
        assert torch.allclose(logits, net(x), atol=1e-6)
        assert feats.shape[:2] == (4, 4) and feats.dim() == 5
        cam = frame_cams(net, x, torch.zeros(4, dtype=torch.long))
        assert cam.shape == (4, 4) + feats.shape[3:]


def test_double_backprop_gradcheck_temporal_model():
    "L_C of a model with temporal shift, BN (eval) and ReLU: autograd (double backprop) == finite differences."
    torch.manual_seed(0)
    net = ShiftNet(num_frames=3, width=3).double().eval()
    x = clips(B=2, T=3, H=4, dtype=torch.float64).requires_grad_(True)
    t = torch.tensor([1, 3])
    f = lambda v: cam_loss(frame_cams(net, v, t, create_graph=True), 2)
    assert torch.autograd.gradcheck(f, (x,), atol=1e-5, fast_mode=True)
    g = lambda v: cam_loss(frame_cams(net, v, t, create_graph=True, mode='minmax', grad_of='logp'), 3)
    assert torch.autograd.gradcheck(g, (x,), atol=1e-5, fast_mode=True)


# ---------------------------------------------------------------- autocast
def test_bf16_autocast_double_backprop():
    torch.manual_seed(0)
    net = ShiftNet().train()
    x, t = clips(), torch.tensor([0, 1, 2, 3])
    saved = buffers(net)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        cam = frame_cams(net, x.clone().requires_grad_(True), t, create_graph=True)
        assert cam.dtype == torch.float32 and torch.isfinite(cam).all()
        x_adv = temporal_attack(net, x, t, steps=2)
    assert x_adv.dtype == x.dtype and in_budget(x_adv, x) and (x_adv != x).float().mean() > 0.5
    # the trainer's pattern under autocast: clean forward, attack reusing it, then backprop the clean loss
    xr = x.clone().requires_grad_(True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, feats = forward_features(net, xr)
        x_adv = temporal_attack(net, xr, t, forward=(logits, feats))
        loss = F.cross_entropy(logits.float(), t)
    assert in_budget(x_adv, x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# ---------------------------------------------------------------- no trace in the model
@pytest.mark.parametrize('attack', ['ta', 'ce'])
def test_trainer_reuse_in_training_mode(attack):
    "Clean forward (updates BN stats), attack reusing it with 2 steps, clean backward: stats and grads as without the attack."
    torch.manual_seed(0)
    net = ShiftNet().train()
    ref = copy.deepcopy(net)
    x, y = clips(), torch.tensor([0, 1, 2, 3])
    xr = x.clone().requires_grad_(True)
    logits, feats = forward_features(net, xr)
    after_clean = buffers(net)
    if attack == 'ta': x_adv = temporal_attack(net, xr, y, steps=2, forward=(logits, feats))
    else: x_adv = ce_attack(net, xr, y, steps=2, forward=(logits, feats))
    assert_same_buffers(net, after_clean)
    assert all(p.grad is None for p in net.parameters())
    assert in_budget(x_adv, x)
    F.cross_entropy(logits, y).backward()
    # the same clean step without any attack
    F.cross_entropy(ref(x.clone().requires_grad_(True)), y).backward()
    assert_same_buffers(ref, after_clean)
    for p, q in zip(net.parameters(), ref.parameters()): assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_reuse_equals_own_forward_eval_bn():
    torch.manual_seed(0)
    net = ShiftNet().eval()
    x, t = clips(), torch.tensor([3, 2, 1, 0])
    xr = x.clone().requires_grad_(True)
    fw = forward_features(net, xr)
    for n in (None, 2):
        a = temporal_attack(net, xr, t, n_nonkey=n, forward=fw, steps=2)
        b = temporal_attack(net, x, t, n_nonkey=n, steps=2)
        assert torch.equal(a, b)
    assert torch.equal(ce_attack(net, xr, t, forward=fw), ce_attack(net, x, t))


def test_param_grads_untouched_and_buffers_restored():
    torch.manual_seed(0)
    net = ShiftNet().train()
    x, t = clips(), torch.tensor([0, 1, 2, 3])
    for p in net.parameters(): p.grad = torch.full_like(p, 0.5)
    saved = buffers(net)
    temporal_attack(net, x, t, steps=3); ce_attack(net, x, t, steps=3)
    assert_same_buffers(net, saved)
    assert all(torch.all(p.grad == 0.5) for p in net.parameters())


def test_dual_bn_clean_path():
    dualbn = pytest.importorskip('taf.dualbn')
    torch.manual_seed(0)
    net = dualbn.convert_dual_bn(ShiftNet().train())
    x, t = clips(), torch.tensor([0, 1, 2, 3])
    saved = buffers(net)
    x_adv = temporal_attack(net, x, t)
    assert_same_buffers(net, saved)
    assert in_budget(x_adv, x)
    with dualbn.adversarial_path(net):
        with pytest.raises(RuntimeError, match='adversarial_path'): temporal_attack(net, x, t)
        with pytest.raises(RuntimeError, match='adversarial_path'): ce_attack(net, x, t)
    # the clean path is what the attack differentiates: same result as the plain model
    plain = dualbn.strip_dual_bn(copy.deepcopy(net))
    assert torch.equal(temporal_attack(plain, x, t), x_adv)


# ---------------------------------------------------------------- the attack itself
def test_rules_select_clips():
    torch.manual_seed(0)
    net = ShiftNet().eval()
    x = clips(B=6)
    logits = net(x).detach()
    pred = logits.argmax(1)
    y = torch.where(torch.arange(6) % 2 == 0, pred, (pred + 1) % 4)   # even clips correct, odd wrong
    for rule, expect in (('taf', [True] * 6), ('correct', [True, False] * 3), ('wrong', [False, True] * 3)):
        target, attacked = attack_targets(logits, y, rule, torch.Generator().manual_seed(0))
        assert attacked.tolist() == expect
        assert (target[1::2] == y[1::2]).all() and (target[0::2] != y[0::2]).all()
        x_adv = temporal_attack(net, x, target, attacked=attacked)
        changed = (x_adv != x).flatten(1).any(1)
        assert changed.tolist() == expect
        assert torch.equal(noise_augment(x, attacked=attacked)[~attacked], x[~attacked])


def test_attack_targets_uniform_chi2():
    K, n = 7, 14000
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, K, (n,), generator=g)
    target, attacked = attack_targets(F.one_hot(y, K).float(), y, generator=g)
    assert attacked.all() and (target != y).all()
    # for true class c, the other K-1 labels are equally likely: pooled chi-square of (target - y) mod K
    counts = torch.bincount((target - y) % K, minlength=K)[1:].double()
    chi2 = ((counts - n / (K - 1)) ** 2 / (n / (K - 1))).sum().item()
    assert chi2 < 20.5, (counts, chi2)  # 99.8% quantile of chi2 with 5 dof is ~18.9


def test_ta_raises_lc_and_projection():
    torch.manual_seed(0)
    net = ShiftNet().eval()
    x, t = clips(), torch.tensor([1, 2, 3, 0])
    lc = lambda v, n: cam_loss(frame_cams(net, v, t), n)
    for n in (1, 2, 4):
        x_small = temporal_attack(net, x, t, step_size=1e-4, eps=1e-4, n_nonkey=n)
        assert (lc(x_small, n) >= lc(x, n) - 1e-6).all()
    x_big = temporal_attack(net, x, t, eps=0.05, step_size=0.2, steps=3)
    assert in_budget(x_big, x, 0.05)


def test_noise_augment_statistics():
    x = torch.full((4, 8, 3, 16, 16), 0.5)
    d = noise_augment(x, generator=torch.Generator().manual_seed(0)) - x
    assert d.abs().max() <= EPS + 1e-6
    assert abs(d.mean().item()) < 2e-3
    d2 = noise_augment(x, sigma=0.01, generator=torch.Generator().manual_seed(0)) - x
    assert abs(d2.std().item() - 0.01) < 5e-4


# ---------------------------------------------------------------- the real models (when the module exists)
def test_real_tsm_model():
    models = pytest.importorskip('taf.models')
    torch.manual_seed(0)
    net = models.create_model('tsm', 5, 8, backbone='resnet18', width=16).train()
    x = clips(B=2, T=8, H=32)
    t = torch.tensor([1, 3])
    saved = buffers(net)
    xr = x.clone().requires_grad_(True)
    logits, feats = forward_features(net, xr)
    assert logits.shape == (2, 5) and feats.shape[:2] == (2, 8) and feats.dim() == 5
    after = buffers(net)
    x_adv = temporal_attack(net, xr, t, forward=(logits, feats), steps=2)
    assert in_budget(x_adv, x)
    assert_same_buffers(net, after)
    F.cross_entropy(logits, t).backward()
    net.eval()
    cam = frame_cams(net, x, t)
    assert cam.shape[:2] == (2, 8) and torch.isfinite(cam).all()


# ---------------------------------------------------------------- method_loss = its public steps
@pytest.mark.parametrize('arch, method', [('tpn', 'taf'), ('tpn', 'noise'), ('gst', 'ce'), ('tsm', 'advprop')])
def test_method_loss_is_its_public_steps(arch, method):
    """`method_loss` is `clean_forward`, `perturb_batch`, `adversarial_loss` and `taf_objective` in this order, bit for
    bit, in training mode (dropout draws, TPN's auxiliary head on both paths, label-rule and noise draws)."""
    from taf.models import create_model
    from taf.dualbn import convert_dual_bn
    from taf.methods import (AdvSettings, get_method, method_loss, clean_forward, perturb_batch, reuses_forward,
                             adversarial_loss, taf_objective)
    torch.manual_seed(0)
    model = convert_dual_bn(create_model(arch, 4, 4, backbone='resnet18', width=8, dropout=0.5)).train()
    x, y = clips(B=3, T=4, H=32 if arch == 'tpn' else 16, seed=1), torch.tensor([0, 1, 2])
    s, m = AdvSettings(label_rule='correct', unattacked='keep'), get_method(method)

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    torch.manual_seed(3)
    o = method_loss(model, x, y, method, s, generator=torch.Generator().manual_seed(4))
    rng, g = torch.get_rng_state(), grads(o.loss)
    torch.manual_seed(3)
    gen, reuse = torch.Generator().manual_seed(4), reuses_forward(m, s)
    clean = clean_forward(model, x, y, reuse=reuse)
    x_adv, attacked = perturb_batch(model, m, clean, y, s, reuse, gen)
    adv = adversarial_loss(model, x_adv, y, attacked, s)
    loss = taf_objective(clean.loss, adv, s.alpha)
    assert (clean.aux is not None) == (arch == 'tpn') and reuse == (method != 'noise')
    for a, b in ((o.loss, loss), (o.clean, clean.loss), (o.adv, adv), (o.x_adv, x_adv), (o.attacked, attacked),
                 (o.logits, clean.logits)):
        assert torch.equal(a, b)
    assert torch.equal(rng, torch.get_rng_state())                       # the same random draws
    assert all(torch.equal(a, b) for a, b in zip(g, grads(loss)))


def test_taf_loss_takes_the_settings_of_AdvSettings():
    from taf.models import create_model
    from taf.dualbn import convert_dual_bn
    from taf.methods import taf_loss, method_loss, AdvSettings
    torch.manual_seed(0)
    model = convert_dual_bn(create_model('tsm', 4, 4, backbone='resnet18', width=8, dropout=0.0)).train()
    x, y = clips(B=2, T=4, H=16), torch.tensor([0, 3])
    kw = dict(alpha=0.5, eps=0.1, step_size=0.05, steps=2, n_nonkey=2, label_rule='taf', cam_mode='minmax',
              cam_grad='logp', reuse_forward=False, unattacked='keep', attack_dropout=False)
    a = taf_loss(model, x, y, generator=torch.Generator().manual_seed(0), **kw)
    b = method_loss(model, x, y, 'taf', AdvSettings(**kw), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.x_adv, b.x_adv)
    with pytest.raises(TypeError, match='beta'): taf_loss(model, x, y, beta=0.1)
