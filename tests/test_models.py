"""Heavier checks of `taf.models` than the notebook runs: every arch x backbone x T, ImageNet-width
ResNet-50s, per-frame CAM maps, and checkpoints written by the test itself in the official TSM,
mmaction2 (TSM and TPN) and IBM TAM layouts (nothing is downloaded)."""
import copy, pickle, re
import pytest
import torch
import torchvision
from taf.models import (ARCHS, create_model, load_weights, detect_layout, temporal_shift,
                        temporal_aggregation, IMAGENET_MEAN, IMAGENET_STD)

pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def _clip(b, t, s, seed=0):
    return torch.rand(b, t, 3, s, s, generator=torch.Generator().manual_seed(seed))


def _forward_backward(m, x):
    feats = []
    h = m.cam_layer.register_forward_hook(lambda mod, i, o: feats.append(o))
    logits, aux = m(x, return_aux=True)
    h.remove()
    loss = logits.logsumexp(1).sum() + (0 if aux is None else m.aux_weight * aux.square().mean())
    loss.backward()
    return logits, m.frames_from_cam(feats[-1]), aux


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('backbone', ['resnet18', 'resnet50'])
@pytest.mark.parametrize('T', [8, 16])
def test_forward_backward_narrow(arch, backbone, T):
    torch.manual_seed(0)
    m = create_model(arch, num_classes=7, num_frames=T, backbone=backbone, width=16)
    B, s = 2, (64 if arch == 'tpn' else 32)
    logits, frames, aux = _forward_backward(m, _clip(B, T, s))
    assert logits.shape == (B, 7)
    C = 16 * 8 * (4 if backbone == 'resnet50' else 1)
    assert frames.shape == (B, T, C, s // 32, s // 32)     # one CAM map per input frame
    assert all(p.grad is not None for n, p in m.named_parameters() if not n.startswith('neck.aux_head'))
    assert (aux is not None) == (arch == 'tpn')


@pytest.mark.parametrize('arch', ARCHS)
def test_imagenet_width_resnet50(arch):
    "width=64 ResNet-50 (torchvision shapes) on a tiny clip."
    torch.manual_seed(0)
    m = create_model(arch, num_classes=174, num_frames=8, backbone='resnet50')
    logits, frames, _ = _forward_backward(m, _clip(2 if arch == 'tpn' else 1, 8, 32))
    assert logits.shape[1] == 174 and frames.shape[1:] == (8, 2048, 1, 1)
    if arch != 'gst':   # 2D nets: the ResNet part has exactly torchvision's names and shapes
        with torch.device('meta'): tv = torchvision.models.resnet50().state_dict()
        tv = {k: v.shape for k, v in tv.items() if not k.startswith('fc.')}
        ours = {k: v.shape for k, v in m.state_dict().items()}
        assert all(ours[k] == s for k, s in tv.items())


def _no_temporal_mixing(arch, T):
    "A model whose temporal ops are switched off: TSM/TPN fold 0, TAM kernel (0, 1, 0), GST Tconv centre tap only."
    m = create_model(arch, 5, T, backbone='resnet18', width=16, **({'n_div': 10**9} if arch in ('tsm', 'tpn') else {}))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith('temporal.weight'): p.zero_(); p[:, 1] = 1
            if name.endswith('Tconv.weight'): p[:, :, [0, 2]] = 0
    return m.eval()


@pytest.mark.parametrize('arch', ARCHS)
def test_frames_from_cam_maps_frames_in_order(arch):
    "With temporal mixing switched off, changing frame 0 of clip 1 changes only the map [1, 0]."
    T, m = 4, _no_temporal_mixing(arch, 4)
    x = _clip(2, T, 64)
    x2 = x.clone(); x2[1, 0] = torch.rand(3, 64, 64)
    out = []
    h = m.cam_layer.register_forward_hook(lambda mod, i, o: out.append(m.frames_from_cam(o)))
    with torch.no_grad(): m(x); m(x2)
    h.remove()
    changed = (out[0] - out[1]).abs().flatten(2).amax(2) > 1e-6
    expected = torch.zeros(2, T, dtype=torch.bool); expected[1, 0] = True
    assert torch.equal(changed, expected)


def test_temporal_ops_do_mix_frames():
    "With the default temporal ops, frame 0 reaches the maps of the other frames (TSM shift, TAM, GST Tconv)."
    for arch in ('tsm', 'tam', 'gst'):
        torch.manual_seed(0)
        m = create_model(arch, 5, 4, backbone='resnet18', width=16).eval()
        x = _clip(1, 4, 32).requires_grad_()
        feats = []
        h = m.cam_layer.register_forward_hook(lambda mod, i, o: feats.append(m.frames_from_cam(o)))
        m(x); h.remove()
        g, = torch.autograd.grad(feats[0][0, 3].sum(), x)
        assert g[0, 0].abs().sum() > 0, arch


def test_shift_matches_official_formula_on_random_tensor():
    x = torch.randn(2 * 5, 16, 3, 3)
    y = temporal_shift(x, 5).view(2, 5, 16, 3, 3)
    x5 = x.view(2, 5, 16, 3, 3)
    assert torch.equal(y[:, :4, :2], x5[:, 1:, :2]) and torch.equal(y[:, 4, :2], torch.zeros(2, 2, 3, 3))
    assert torch.equal(y[:, 1:, 2:4], x5[:, :4, 2:4]) and torch.equal(y[:, 0, 2:4], torch.zeros(2, 2, 3, 3))
    assert torch.equal(y[:, :, 4:], x5[:, :, 4:])


def test_tam_equals_depthwise_temporal_conv():
    "TAM's shifted multiply-adds = ReLU of a depthwise Conv3d with kernel (3, 1, 1), values and gradients."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * 4, 8, 5, 5, generator=g, requires_grad=True)
    w = torch.randn(8, 3, generator=g, requires_grad=True)
    ref = torch.relu(torch.nn.functional.conv3d(x.view(3, 4, 8, 5, 5).transpose(1, 2), w.view(8, 1, 3, 1, 1),
                                                padding=(1, 0, 0), groups=8)).transpose(1, 2).reshape(12, 8, 5, 5)
    out = temporal_aggregation(x, w, 4)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(torch.autograd.grad(out.square().sum(), (x, w)),
                               torch.autograd.grad(ref.square().sum(), (x, w)))


def test_normalisation_is_first_op_for_every_arch():
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    x = _clip(1, 4, 32)
    for arch in ARCHS:
        m = create_model(arch, 3, 4, backbone='resnet18', width=16).eval()
        seen = []
        h = m.conv1.register_forward_hook(lambda mod, i, o: seen.append(i[0]))
        with torch.no_grad(): m(x)
        h.remove()
        want = (x - mean) / std
        want = want.transpose(1, 2) if arch == 'gst' else want.flatten(0, 1)
        torch.testing.assert_close(seen[0], want)
    assert 'mean' not in m.state_dict()   # non-persistent: never in checkpoints


# ---------------------------------------------------------------------------------------------
# checkpoints in foreign layouts, written here by renaming our own state_dict the other way
def to_tsm_official(sd):
    out = {}
    for k, v in sd.items():
        if k.startswith('fc.'): out['module.new_fc.' + k[3:]] = v
        else: out['module.base_model.' + re.sub(r'^(layer\d\.\d+)\.conv1\.', r'\1.conv1.net.', k)] = v
    return {'epoch': 25, 'arch': 'resnet50', 'best_prec1': 45.6, 'state_dict': out}


def to_mmaction2(sd):
    out = {}
    for k, v in sd.items():
        if k.startswith('fc.'): k = 'cls_head.fc_cls.' + k[3:]
        elif k.startswith('neck.'): pass
        else:
            k = re.sub(r'^conv1\.weight$', 'conv1.conv.weight', k)
            k = re.sub(r'^bn1\.', 'conv1.bn.', k)
            k = re.sub(r'^(layer\d\.\d+)\.conv1\.weight$', r'\1.conv1.conv.net.weight', k)   # shifted conv
            k = re.sub(r'^(layer\d\.\d+)\.conv([23])\.weight$', r'\1.conv\2.conv.weight', k)
            k = re.sub(r'^(layer\d\.\d+)\.bn(\d)\.', r'\1.conv\2.bn.', k)
            k = re.sub(r'^(layer\d\.\d+)\.downsample\.0\.', r'\1.downsample.conv.', k)
            k = re.sub(r'^(layer\d\.\d+)\.downsample\.1\.', r'\1.downsample.bn.', k)
            k = 'backbone.' + k
        out[k] = v
    return {'meta': {'epoch': 150, 'mmaction2_version': '1.2.0'}, 'state_dict': out}


def to_ibm_tam(sd):
    out = {}
    for k, v in sd.items():
        if k.endswith('.temporal.weight'):
            base = k[:-len('.temporal.weight')]
            for i, s in enumerate(('prev', 'curr', 'next')):
                out[f'module.{base}.tam.{s}_se.fc1.weight'] = v[:, i].reshape(-1, 1, 1, 1).clone()
        else: out['module.' + k] = v
    return {'epoch': 50, 'state_dict': out}


def to_tpn_official(sd):
    "decisionforce/TPN's release (mmcv Runner): plain ResNet names under `backbone.`, the neck as `necks.` (its "
    "submodule names assumed equal to mmaction2's port, which `taf`'s TPN follows: unverified on a released file)."
    out = {}
    for k, v in sd.items():
        if k.startswith('fc.'): k = 'cls_head.fc_cls.' + k[3:]
        elif k.startswith('neck.'): k = 'necks.' + k[len('neck.'):]
        else: k = 'backbone.' + k
        out[k] = v
    return {'meta': {'epoch': 150}, 'state_dict': out}


def _perturbed(m):
    "Make BN statistics and affine params non-trivial so that a wrong mapping would show in the outputs."
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if v.is_floating_point() and ('bn' in k or 'downsample.1' in k or '.conv.bn' in k):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
    return m.eval()


@pytest.mark.parametrize('arch,backbone,writer,layout', [
    ('tsm', 'resnet50', to_tsm_official, 'tsm'), ('tsm', 'resnet18', to_mmaction2, 'mmaction2'),
    ('tpn', 'resnet50', to_mmaction2, 'mmaction2'), ('tam', 'resnet18', to_ibm_tam, 'ibm_tam'),
    ('gst', 'resnet18', to_tsm_official, 'tsm'), ('tpn', 'resnet18', to_tpn_official, 'mmaction2')])
def test_foreign_checkpoint_roundtrip(tmp_path, arch, backbone, writer, layout):
    torch.manual_seed(0)
    src = _perturbed(create_model(arch, 6, 8, backbone=backbone, width=16))
    ckpt = writer(src.state_dict())
    path = tmp_path / f'{arch}_{layout}.pth'
    torch.save(ckpt, path)
    assert detect_layout(ckpt['state_dict']) == layout
    torch.manual_seed(1)
    dst = create_model(arch, 6, 8, backbone=backbone, width=16, pretrained=path).eval()
    x = _clip(2, 8, 64)
    with torch.no_grad(): torch.testing.assert_close(dst(x), src(x))


def test_foreign_checkpoint_errors_list_keys(tmp_path):
    m = create_model('tpn', 6, 8, backbone='resnet18', width=16)
    ckpt = to_mmaction2(m.state_dict())
    sd = ckpt['state_dict']
    sd['neck.extra_module.weight'] = torch.zeros(2)
    del sd['backbone.layer2.0.conv1.conv.net.weight']
    sd['cls_head.fc_cls.weight'] = torch.zeros(400, 128)
    torch.save(ckpt, tmp_path / 'bad.pth')
    with pytest.raises(ValueError) as e:
        create_model('tpn', 6, 8, backbone='resnet18', width=16, pretrained=tmp_path / 'bad.pth')
    msg = str(e.value)
    assert 'bad.pth' in msg and 'mmaction2' in msg
    assert 'neck.extra_module.weight' in msg and 'layer2.0.conv1.weight' in msg and 'fc.weight: checkpoint (400, 128)' in msg
    info = load_weights(m, tmp_path / 'bad.pth', strict=False)   # skips and reports instead
    assert 'fc.weight' in info['skipped'] and 'layer2.0.conv1.weight' in info['skipped']


def test_taf_checkpoint_roundtrip_and_wrapped(tmp_path):
    src = _perturbed(create_model('gst', 4, 8, backbone='resnet50', width=16))
    torch.save({'model': src.state_dict(), 'epoch': 3}, tmp_path / 'taf.pth')
    dst = create_model('gst', 4, 8, backbone='resnet50', width=16, pretrained=tmp_path / 'taf.pth').eval()
    x = _clip(1, 8, 32)
    with torch.no_grad(): torch.testing.assert_close(dst(x), src(x))


def test_imagenet_resnet50_into_gst_and_tam(tmp_path):
    tv = torchvision.models.resnet50()
    p = tmp_path / 'resnet50.pth'
    torch.save(tv.state_dict(), p)
    gst = create_model('gst', 174, 8, pretrained=p)
    w2, w = tv.layer3[1].conv2.weight, gst.layer3[1].conv2.weight     # [256, 256, 3, 3] -> [192, 128, 1, 3, 3]
    assert w.shape == (192, 128, 1, 3, 3)
    torch.testing.assert_close(w[:, :, 0], w2[:192, :128])
    torch.testing.assert_close(gst.conv1.weight[:, :, 0], tv.conv1.weight)
    torch.testing.assert_close(gst.layer4[0].downsample[1].running_var, tv.layer4[0].downsample[1].running_var)
    tam = create_model('tam', 174, 8, pretrained=p)
    torch.testing.assert_close(tam.layer4[2].conv3.weight, tv.layer4[2].conv3.weight)
    info = load_weights(create_model('tpn', 174, 8), p)
    assert info['layout'] == 'torchvision' and all(k.startswith('neck.') for k in info['kept_init'])
    with pytest.raises(ValueError, match='shape mismatches'):
        create_model('tsm', 174, 8, backbone='resnet18', pretrained=p)   # resnet50 weights into resnet18


def test_dual_bn_checkpoint_gets_a_hint():
    m = create_model('tsm', 5, 8, backbone='resnet18', width=16)
    sd = {re.sub(r'\.bn1\.', '.bn1.main.', k): v for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match='load_state_dict_dual'): load_weights(m, sd)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"'x3d'.*tsm"): create_model('x3d', 5, 8)
    with pytest.raises(ValueError, match=r"'resnet34'.*resnet18"): create_model('tsm', 5, 8, backbone='resnet34')
    with pytest.raises(FileNotFoundError, match='nothing is downloaded'): create_model('tsm', 5, 8, pretrained='missing.pth')
    m = create_model('tsm', 5, 8, backbone='resnet18', width=16)
    with pytest.raises(ValueError, match=r'T=8'): m(torch.rand(1, 4, 3, 32, 32))


def test_tpn_aux_logits_returned_not_stored():
    m = create_model('tpn', 5, 8, backbone='resnet18', width=16)
    logits, aux = m(_clip(2, 8, 64), return_aux=True)
    assert logits.shape == aux.shape == (2, 5) and aux.requires_grad
    assert not hasattr(m, 'aux_logits')     # nothing graph-attached is left on the model
    c = copy.deepcopy(m)                    # so copies (EMA, dual BN) and pickling just work
    pickle.loads(pickle.dumps(c))
    calls = []
    h = m.neck.aux_head.register_forward_hook(lambda mod, i, o: calls.append(o))
    m.eval()
    with torch.no_grad(): y = m(_clip(2, 8, 64))
    h.remove()
    assert torch.is_tensor(y) and calls == []   # a plain forward returns the logits and never runs the aux head


def test_bf16_autocast_forward_backward():
    for arch in ARCHS:
        m = create_model(arch, 5, 8, backbone='resnet18', width=16)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = m(_clip(2, 8, 64))
        assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
        y.float().sum().backward()
