"""taf.train: config checks, checkpoint errors, non-finite loss, mixed precision, channels_last, SyncBN with dual BN,
the attack's reuse of the clean forward, TPN's auxiliary loss, every method in the one loop, exact resume of TAF."""
import dataclasses, math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from taf.attack import preserved_buffers
from taf.dualbn import DualBatchNorm, is_dual
from taf.synthetic import SyntheticVideos
from taf.checkpoint import load_checkpoint, save_checkpoint
from taf.config import TrainConfig, finetune_config, validate_config
from taf.train import Trainer, NonFiniteLossError, load_model, train

TINY = dict(preset='small', num_classes=4, num_frames=6, size=16, train_per_class=2, val_per_class=1)


@pytest.fixture(scope='module')
def data():
    return SyntheticVideos('train', **TINY), SyntheticVideos('val', **TINY)


def tiny_cfg(out, **kw):
    c = dict(dataset='synthetic', synthetic=TINY, num_frames=6, backbone='resnet18', width=8, epochs=1, batch_size=4,
             lr=0.01, workers=0, progress=False, out_dir=str(out))
    return TrainConfig(**{**c, **kw})


@pytest.fixture(scope='module')
def baseline(tmp_path_factory, data):
    "A 1-epoch baseline checkpoint to fine-tune from."
    out = tmp_path_factory.mktemp('baseline')
    return train(tiny_cfg(out), train_ds=data[0], val_ds=data[1])['checkpoint']


def batch(ds, n=4):
    return torch.stack([ds[i][0] for i in range(n)]), torch.tensor([ds[i][1] for i in range(n)])


# -- configuration -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kw, field', [
    (dict(arch='i3d'), 'arch'), (dict(eps=-1 / 255), 'eps'), (dict(alpha=1.2), 'alpha'), (dict(alpha=-0.1), 'alpha'),
    (dict(n_nonkey=7), 'n_nonkey'), (dict(n_nonkey=0), 'n_nonkey'), (dict(label_rule='all'), 'label_rule'),
    (dict(method='mixup'), 'method'), (dict(method='augment:nope'), 'method'), (dict(amp='fp8'), 'amp'),
    (dict(dataset='ssv1', root='/no/such/folder'), 'root'), (dict(dataset='ssv2'), 'root'),
    (dict(method='taf'), 'init'), (dict(method='control', init='/no/such.pt'), 'init'), (dict(steps=0), 'steps')])
def test_bad_config_fails_before_work_naming_the_field(tmp_path, data, kw, field):
    out = tmp_path / 'never'
    with pytest.raises(ValueError, match=f'TrainConfig.{field}='):
        Trainer(tiny_cfg(out, **kw))              # no datasets given: the dataset root is checked too
    assert not out.exists()


def test_finetune_refuses_to_overwrite_its_init(baseline):
    with pytest.raises(ValueError, match='TrainConfig.out_dir='):
        validate_config(tiny_cfg(Path(baseline).parent, method='taf', init=baseline))
    assert finetune_config(baseline, 'taf').out_dir == str(Path(baseline).parent) + '_taf'   # default: a sibling folder


def test_fp16_needs_cuda():
    if torch.cuda.is_available(): pytest.skip('CUDA present')
    with pytest.raises(ValueError, match='TrainConfig.amp'): validate_config(TrainConfig(dataset='synthetic', amp='fp16'))


# -- checkpoints ---------------------------------------------------------------------------------------------------

def test_checkpoint_for_other_arch_or_classes_or_truncated(tmp_path, data, baseline):
    with pytest.raises(ValueError, match="arch='tsm'"):
        Trainer(tiny_cfg(tmp_path / 'a', arch='tam', method='control', init=baseline), *data)
    other = SyntheticVideos('train', **{**TINY, 'num_classes': 5})
    with pytest.raises(ValueError, match='num_classes=4'):
        Trainer(tiny_cfg(tmp_path / 'b', method='taf', init=baseline), other, data[1])
    bad = tmp_path / 'truncated.pt'
    bad.write_bytes(Path(baseline).read_bytes()[:1000])
    with pytest.raises(ValueError, match='truncated'):
        Trainer(tiny_cfg(tmp_path / 'c', method='taf', init=str(bad)), *data)
    ck = load_checkpoint(baseline)                          # weights_only=True load of a real checkpoint
    assert ck['meta']['arch'] == 'tsm' and ck['meta']['num_classes'] == 4 and not ck['meta']['dual']
    assert {'optimizer', 'scheduler', 'scaler', 'rng', 'epoch', 'step_in_epoch', 'config'} <= set(ck)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data):
    calls = []
    def poison(x, y, num_classes, generator):              # batch-transform hook: NaN input from step 3 on
        calls.append(1)
        return (x * float('nan') if len(calls) >= 3 else x), y
    t = Trainer(tiny_cfg(tmp_path, epochs=3, batch_size=2), *data, batch_transform=poison)   # 4 steps per epoch
    with pytest.raises(NonFiniteLossError, match='non-finite loss at epoch 1, step 3'):
        t.fit()
    ck = load_checkpoint(tmp_path / 'last.pt') if (tmp_path / 'last.pt').exists() else None
    assert ck is None                                        # no checkpoint was written after the bad step
    assert all(torch.isfinite(p).all() for p in t.model.parameters())   # the bad step was not applied
    calls.clear()
    t = Trainer(tiny_cfg(tmp_path / 'b', epochs=3, batch_size=2, ckpt_every=1), *data,
                batch_transform=lambda x, y, k, g: (calls.append(1) or (x * float('nan') if len(calls) >= 6 else x), y))
    with pytest.raises(NonFiniteLossError):
        t.fit()
    ck = load_checkpoint(tmp_path / 'b' / 'last.pt')
    assert (ck['epoch'], ck['step_in_epoch']) == (1, 1)      # the last good state: after 5 steps
    assert all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())


# -- the objective ---------------------------------------------------------------------------------------------------

def test_attack_reuses_the_clean_forward(tmp_path, data, baseline):
    "With dropout 0 the attack's own forward equals the clean one: same loss with and without reuse."
    x, y = batch(data[0])
    out = []
    for reuse in (True, False):
        t = Trainer(tiny_cfg(tmp_path, method='taf', init=baseline, dropout=0.0, reuse_forward=reuse), *data)
        t._seed_part(0)
        loss, st = t.batch_loss(x, y)
        loss.backward()
        out.append((loss.item(), st, [p.grad.clone() for p in t.model.parameters() if p.grad is not None]))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-5)
    assert out[0][1]['adv'] == pytest.approx(out[1][1]['adv'], rel=1e-5)
    for a, b in zip(out[0][2], out[1][2]): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)



@pytest.mark.parametrize('method', ['taf', 'ce', 'baseline'])
def test_a_training_step_reads_device_values_once(tmp_path, data, baseline, method, monkeypatch):
    """A step reads values back from the device once (`.tolist()` of its statistics): on an accelerator every
    other read (`.item()`, `bool()`, ...) would be a host-device sync. Counted on the CPU with the attack on its
    accelerator path (no early exit on an all-clean batch, `taf.attack._nothing_to_attack`)."""
    import taf.attack
    monkeypatch.setattr(taf.attack, '_nothing_to_attack', lambda a: False)
    t = Trainer(tiny_cfg(tmp_path, method=method, init=None if method == 'baseline' else baseline), *data)
    micro = next(t._micro_batches(0, 0))
    reads = []
    for name in ('item', 'tolist', '__bool__', '__float__', '__int__', '__index__', 'numpy'):
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _o=orig, _n=name, **k: reads.append(_n) or _o(self, *a, **k))
    t.train_step(micro)
    monkeypatch.undo()
    assert reads == ['tolist'], reads


def test_adversarial_term_goes_through_aux_bn_and_attack_keeps_main_stats(tmp_path, data, baseline):
    t = Trainer(tiny_cfg(tmp_path, method='taf', init=baseline), *data)
    duals = [m for m in t.model.modules() if isinstance(m, DualBatchNorm)]
    assert duals and all(torch.equal(d.main.weight, d.aux.weight) for d in duals)   # aux = copy of main
    main0 = [d.main.num_batches_tracked.item() for d in duals]
    aux0 = [d.aux.num_batches_tracked.item() for d in duals]
    x, y = batch(data[0])
    t._seed_part(0)
    loss, st = t.batch_loss(x, y)
    # one clean forward updates main stats once (the attack's reuse adds none), one adversarial forward the aux ones
    assert [d.main.num_batches_tracked.item() for d in duals] == [m + 1 for m in main0]
    assert [d.aux.num_batches_tracked.item() for d in duals] == [a + 1 for a in aux0]
    loss.backward()
    assert all(d.aux.weight.grad is not None for d in duals)
    assert st['attacked'] == 4 and math.isfinite(st['adv'])


def test_tpn_aux_loss_is_added(tmp_path):
    ds = SyntheticVideos('train', **TINY)
    t = Trainer(tiny_cfg(tmp_path, arch='tpn', dropout=0.0), ds, ds)
    x, y = batch(ds)
    m = t.model.train()
    t._seed_part(0)                                         # same dropout masks as in batch_loss below
    with torch.no_grad(), preserved_buffers(m):
        logits, aux = m(x, return_aux=True)
    assert aux is not None and m.aux_weight == 0.5
    t._seed_part(0)
    loss, _ = t.batch_loss(x, y)
    want = F.cross_entropy(logits, y) + 0.5 * F.cross_entropy(aux, y)
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)


@pytest.mark.parametrize('method', ['control', 'taf', 'ce', 'noise', 'augment:mixup'])
def test_every_finetuning_method_in_the_one_loop(tmp_path, data, baseline, method):
    r = Trainer(finetune_config(baseline, method, epochs=1, batch_size=4, out_dir=str(tmp_path)), *data).fit()
    h = r['history'][0]
    assert math.isfinite(h['train_loss']) and math.isfinite(h['val_loss'])
    adversarial = method in ('taf', 'ce', 'noise')
    assert (h['train_loss_adv'] > 0) == adversarial and (h['attacked_frac'] == 1.0) == adversarial
    assert load_checkpoint(r['checkpoint'])['meta']['dual'] == adversarial
    assert not is_dual(load_model(r['checkpoint']))         # deployable model: clean path only


def test_advprop_from_scratch(tmp_path, data):
    t = Trainer(tiny_cfg(tmp_path, method='advprop', alpha=0.5), *data)
    assert is_dual(t.model)
    h = t.fit()['history'][0]
    assert h['train_loss_adv'] > 0


def test_finetune_starts_from_the_baseline_last_state(tmp_path, data, baseline):
    c = finetune_config(baseline, 'control', out_dir=str(tmp_path))
    assert (c.epochs, c.lr_steps, c.init) == (15, (10,), baseline)
    assert c.lr == pytest.approx(0.01)                      # tiny baseline: 1 epoch at lr 0.01, no decay yet
    t = Trainer(c, *data)
    sd = load_checkpoint(baseline)['model']
    for k, v in t.model.state_dict().items(): torch.testing.assert_close(v, sd[k])


# -- precision, memory format, batch norm ---------------------------------------------------------------------------

@pytest.mark.parametrize('method', ['baseline', 'taf'])
def test_bf16_autocast_with_double_backprop(tmp_path, data, baseline, method):
    kw = dict(method='taf', init=baseline) if method == 'taf' else {}
    t = Trainer(tiny_cfg(tmp_path, amp='bf16', **kw), *data)
    before = [p.detach().clone() for p in t.model.parameters()]
    x, y = batch(data[0])
    st = t.train_step([(x, y)])
    assert math.isfinite(st['loss'] / st['n'])
    if method == 'taf': assert st['adv'] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, t.model.parameters()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 + GradScaler needs CUDA')
def test_fp16_gradscaler_cuda(tmp_path, data, baseline):
    t = Trainer(tiny_cfg(tmp_path, amp='fp16', method='taf', init=baseline, device='cuda'), *data)
    st = t.train_step([tuple(v.cuda() for v in batch(data[0]))])
    assert math.isfinite(st['loss']) and t.scaler.is_enabled()


def test_channels_last_trains(tmp_path, data, baseline):
    t = Trainer(tiny_cfg(tmp_path, channels_last=True, method='taf', init=baseline), *data)
    conv = next(p for p in t.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(t.train_step([batch(data[0])])['loss'])


def test_sync_bn_with_dual_bn(tmp_path, data, baseline):
    "SyncBatchNorm replaces both members of every dual BN (single process: it runs as plain BN)."
    t = Trainer(tiny_cfg(tmp_path, sync_bn=True, method='taf', init=baseline), *data)
    duals = [m for m in t.model.modules() if isinstance(m, DualBatchNorm)]
    assert duals and all(isinstance(d.main, nn.SyncBatchNorm) and isinstance(d.aux, nn.SyncBatchNorm) for d in duals)
    assert math.isfinite(t.train_step([batch(data[0])])['loss'])
    t.save()
    assert not is_dual(load_model(tmp_path / 'last.pt'))


# -- exact resume of a TAF fine-tuning (the subprocess SIGKILL test is in test_resume.py) -----------------------------

def test_taf_resume_mid_epoch_is_exact(tmp_path, data, baseline):
    def cfg(out): return finetune_config(baseline, 'taf', epochs=2, batch_size=2, ckpt_every=1, out_dir=str(out))
    straight = Trainer(cfg(tmp_path / 'a'), *data).fit()
    t = Trainer(cfg(tmp_path / 'b'), *data)
    orig = t.train_step
    def stop(micro):
        if t.global_step == 5: raise KeyboardInterrupt          # after 5 of 8 steps (epoch 2, step 1)
        return orig(micro)
    t.train_step = stop
    with pytest.raises(KeyboardInterrupt): t.fit()
    resumed = Trainer(cfg(tmp_path / 'b'), *data).fit(resume=True)
    a, b = load_checkpoint(tmp_path / 'a' / 'last.pt'), load_checkpoint(tmp_path / 'b' / 'last.pt')
    for k, v in a['model'].items(): torch.testing.assert_close(b['model'][k], v, rtol=0, atol=1e-6)
    assert [r['train_loss'] for r in straight['history']] == pytest.approx([r['train_loss'] for r in resumed['history']], abs=1e-7)
