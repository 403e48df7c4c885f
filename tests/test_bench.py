"""The speed work (issue 25): the benchmark of ceilings runs (tiny sizes, CPU) and says what it measured; every fast path
computes what the plain path computes (the same loss on the same batch, the same images), and records say which ran.

GPU-only paths (CUDA graphs in sampling, fused AdamW) are checked here only where a GPU is present; the rest on the CPU.
`torch.compile` on the CPU takes minutes to compile even a tiny UNet (measured: ~100 s), so that check is `slow`."""
import copy, importlib.util, json, math, tempfile
from pathlib import Path

import pytest
import torch

from dmkd.core import maybe_compile, read_json
from dmkd.data import load_dataset
from dmkd.generators import make_scheduler
from dmkd.ddpm import DDPMConfig, DDPMGenerator, build_unet, ddpm_batch, ddpm_loss, train_ddpm
from dmkd.synth import StoreSpec, make_store, read_manifest
from dmkd.core import Where

ROOT = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()


def _bench():
    spec = importlib.util.spec_from_file_location('bench_gpu', ROOT / 'tools' / 'bench_gpu.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_bench_gpu_tiny_on_cpu(tmp_path):
    out = tmp_path / 'bench.json'
    res = _bench().main(['--tiny', '--device', 'cpu', '--out', str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    for k in ('date', 'command', 'device', 'device_name', 'torch', 'hardware', 'preset', 'sizes', 'flags', 'stages'): assert k in res, k
    assert res['device'] == 'cpu' and res['preset'] == 'tiny' and res['torch'] == torch.__version__
    assert res['command'].startswith('python tools/bench_gpu.py') and '--tiny' in res['command']
    assert set(res['flags']) >= {'precision_kd', 'precision_ddpm', 'compile', 'cuda_graphs'} and res['flags']['cuda_graphs'] is False
    assert set(res['stages']) == {'kd', 'kd_cached', 'teacher_forward', 'ddpm_train', 'sampling'}
    for name, s in res['stages'].items():
        assert s['loop'] > 0 and s['ceiling'] > 0 and math.isfinite(s['loop']) and math.isfinite(s['ceiling']), name
        # loop and ceiling are written to 0.1 images/s, the ratio (of the unrounded rates) to 1e-4: at the tiny preset's
        # few images/s the rounded rates alone move their quotient by up to 0.05/loop + 0.05/ceiling of itself
        tol = s['ratio'] * (0.05 / s['loop'] + 0.05 / s['ceiling']) + 1e-4
        assert s['ratio'] == pytest.approx(s['loop'] / s['ceiling'], abs=tol), name
        assert s['precision'] in ('bf16', 'fp32'), name
    assert res['stages']['ddpm_train']['precision'] == 'fp32' and res['stages']['sampling']['cuda_graphs'] is False   # CPU defaults


def _tiny_batch(cfg):
    d = load_dataset('digits', 'corpus', native=True)
    alphas = make_scheduler('ddpm', cfg.noise_config()).alphas_cumprod
    return ddpm_batch(cfg, d.images[:64], d.labels[:64], alphas, 10, step=5)


def test_ddpm_fast_paths_same_loss():
    "Channels-last and bf16 autocast give the loss of the plain fp32 contiguous step on the same batch (bf16 within its rounding), gradients too."
    cfg = DDPMConfig(block_out_channels=(16, 32), batch_size=16)
    torch.manual_seed(0); net = build_unet(cfg, 8, 1, 10); b = _tiny_batch(cfg)
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    l32, lcl, l16 = ddpm_loss(net, b), ddpm_loss(cl, b, channels_last=True), ddpm_loss(copy.deepcopy(net), b, 'bf16')
    assert lcl.item() == pytest.approx(l32.item(), rel=1e-5)
    assert l16.item() == pytest.approx(l32.item(), rel=2e-2)
    l32.backward(); lcl.backward()
    for (n, p), q in zip(net.named_parameters(), cl.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5), n


def test_train_ddpm_fast_knobs_same_losses_and_recorded(tmp_path):
    "Training with channels_last (and the loss read every 50 steps, not each step) follows the plain run's losses; the knobs are in the generator's meta and out of its key."
    data = load_dataset('digits', 'corpus', native=True)
    base = DDPMConfig(block_out_channels=(16, 16), steps=4, batch_size=16)
    fast = DDPMConfig(block_out_channels=(16, 16), steps=4, batch_size=16, channels_last=True)
    assert fast.key('d') == base.key('d')
    g0 = train_ddpm(base, data, cache=tmp_path / 'a', device='cpu', progress=False)
    g1 = train_ddpm(fast, data, cache=tmp_path / 'b', device='cpu', progress=False)
    assert g1.meta['training'] == dict(images=len(data), precision='fp32', compile=False, channels_last=True, fused_adamw=False, lr=fast.lr,
                                       images_per_s=g1.meta['training']['images_per_s'])
    assert g0.meta['training']['channels_last'] is False and g1.meta['training']['images_per_s'] > 0
    assert g1.meta['final_loss'] == pytest.approx(g0.meta['final_loss'], rel=1e-3)
    assert all(p.is_contiguous() for p in g1.unet.parameters())          # saved as safetensors: contiguous weights
    g2 = train_ddpm(DDPMConfig(block_out_channels=(16, 16), steps=4, batch_size=16, precision='bf16'), data, cache=tmp_path / 'c', device='cpu', progress=False)
    assert g2.meta['training']['precision'] == 'bf16' and g2.meta['final_loss'] == pytest.approx(g0.meta['final_loss'], rel=5e-2)


def test_store_records_sampling(tmp_path):
    cfg = DDPMConfig(block_out_channels=(16, 16))
    gen = DDPMGenerator(build_unet(cfg, 8, 1, 10), cfg.noise_config(), [str(i) for i in range(10)], dict(key='untrained'), 'cpu')
    folder = make_store(gen, tmp_path / 's', StoreSpec(n_per_class=2, num_steps=2), where=Where(device='cpu', progress=False))
    man = read_manifest(folder)
    assert man['sampling'] == dict(precision='fp32', cuda_graphs=False)


@pytest.mark.slow
def test_compiled_ddpm_loss_same_as_eager():
    "torch.compile (inductor) of the UNet: the same loss on the same batch (measured ~100 s to compile on 2 CPU cores)."
    cfg = DDPMConfig(block_out_channels=(16, 16), batch_size=8)
    torch.manual_seed(0); net = build_unet(cfg, 8, 1, 10); b = _tiny_batch(cfg)
    with torch.no_grad():
        assert ddpm_loss(maybe_compile(net, True), b).item() == pytest.approx(ddpm_loss(net, b).item(), rel=1e-4)


@pytest.mark.skipif(not CUDA, reason='CUDA graphs need a CUDA GPU')
def test_cuda_graph_sampling_same_images():
    cfg = DDPMConfig(block_out_channels=(32, 64), attention=True)
    torch.manual_seed(0); unet = build_unet(cfg, 16, 3, 10)
    mk = lambda graphs: DDPMGenerator(copy.deepcopy(unet), cfg.noise_config(), [str(i) for i in range(10)], dict(key='t'), 'cuda', batch_size=24, cuda_graphs=graphs)
    plain, graphed = mk(False), mk(True)
    ids = torch.arange(40) % 10
    a, b = plain.generate(ids, 2.0, 5, 'ddim', seed=3), graphed.generate(ids, 2.0, 5, 'ddim', seed=3)
    assert graphed.sampling['cuda_graphs'] is True and plain.sampling['cuda_graphs'] is False
    assert (a.int() - b.int()).abs().max() <= 1          # the same kernels replayed: the same images (±1 of 255 from rounding at most)


@pytest.mark.skipif(not CUDA, reason='fused AdamW is used on CUDA only')
def test_fused_adamw_on_cuda(tmp_path):
    data = load_dataset('digits', 'corpus', native=True)
    g = train_ddpm(DDPMConfig(block_out_channels=(16, 16), steps=3, batch_size=16), data, cache=tmp_path, device='cuda', progress=False)
    assert g.meta['training']['fused_adamw'] is True and g.meta['training']['precision'] == 'bf16'
