"""Benchmark of ceilings: each stage's throughput as dmkd runs it, next to its own ceiling, in one process.

    python tools/bench_gpu.py [--device auto] [--preset tiny|cpu|gpu] [--tiny] [--compile] [--channels-last]
                              [--precision auto|bf16|fp32] [--no-cuda-graphs] [--out FILE]

A stage's *loop* is the library's own code path, timed as it reports itself; its *ceiling* is the same model doing only
its arithmetic on one batch already resident on the device (no data, augmentation, scheduler, bookkeeping), with the
same precision, memory format and compile setting. The ratio loop / ceiling says how much the loop leaves on the table.

* kd: `distill_student` (uint8 images on the device, batched augmentation, teacher forward every step) against the
  student's forward+backward+SGD step plus the teacher's forward on a resident batch (1 / (1/student + 1/teacher));
* kd_cached: the same loop with the FKD-style teacher cache (1 draw) against the student's step alone;
* teacher_forward: building the teacher cache (augment + teacher forward over every image) against the teacher's forward;
* ddpm_train: `train_ddpm` (after a warm-up call it resumes from) against `ddpm_loss` + backward + AdamW on one batch;
* sampling: `DDPMGenerator.generate` (DDIM, guided, CUDA graphs on CUDA) against the guided UNet forward (batch 2B) × T.

All models are untrained (throughput does not depend on the weights) and the images random, so it needs no data. It
prints one JSON object (the date, the command, the device, torch, the precision, compile and CUDA-graph flags, sizes
and the stages), and `--out FILE` writes it too. `--tiny` (CI) runs in seconds on a CPU.
"""
import argparse, datetime, json, math, os, shlex, sys, tempfile, time
from pathlib import Path

import torch

from dmkd.core import get_accelerator, get_device, hardware_info, maybe_compile, seed_everything
from dmkd.data import ImageSet
from dmkd.core import resolve_precision
from dmkd.distill import KDConfig, TeacherCache, distill_student, kd_loss
from dmkd.data import BatchAugment
from dmkd.generators import make_scheduler
from dmkd.ddpm import DDPMConfig, DDPMGenerator, build_unet, ddpm_batch, ddpm_loss, train_ddpm
from dmkd.models import get_model

#: Sizes per preset: `gpu` is the CIFAR-10 GPU sweep profile's models and batches; `cpu` a few minutes on 2 cores; `tiny` CI.
PRESETS = dict(
    tiny=dict(n_images=128, resolution=16, teacher='resnet8', student='resnet8', kd_batch=32, kd_epochs=2, teacher_batch=64,
              ddpm_widths=(16, 16), ddpm_layers=1, ddpm_batch=8, ddpm_warmup=2, ddpm_steps=3,
              n_samples=8, sample_batch=8, num_steps=2, ceiling_steps=3, ceiling_warmup=1),
    cpu=dict(n_images=2000, resolution=32, teacher='vgg11', student='resnet20', kd_batch=64, kd_epochs=2, teacher_batch=500,
             ddpm_widths=(32, 64), ddpm_layers=1, ddpm_batch=64, ddpm_warmup=5, ddpm_steps=20,
             n_samples=128, sample_batch=128, num_steps=10, ceiling_steps=30, ceiling_warmup=3),
    gpu=dict(n_images=20000, resolution=32, teacher='resnet34', student='resnet20', kd_batch=256, kd_epochs=3, teacher_batch=500,
             ddpm_widths=(64, 128, 128), ddpm_layers=2, ddpm_batch=256, ddpm_warmup=30, ddpm_steps=300,
             n_samples=4096, sample_batch=256, num_steps=25, ceiling_steps=50, ceiling_warmup=10),
)
NUM_CLASSES = 10


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def rate(fn, items: int, steps: int, warmup: int, dev) -> float:
    "Items per second of `fn` (which handles `items` items per call), timed over `steps` calls after `warmup` calls."
    for _ in range(warmup): fn()
    sync(dev); t0 = time.perf_counter()
    for _ in range(steps): fn()
    sync(dev)
    return items * steps / (time.perf_counter() - t0)


def stage(loop: float, ceiling: float, **extra) -> dict:
    "One stage's entry: loop and ceiling images/s and their ratio."
    return dict(loop=round(loop, 1), ceiling=round(ceiling, 1), ratio=round(loop / ceiling, 4), unit='images/s') | extra


def random_images(n, res, dev, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8, generator=g)
    return ImageSet(x, torch.arange(n) % NUM_CLASSES, [str(i) for i in range(NUM_CLASSES)], 'bench', 'train')


def kd_stages(p, dev, precision, compile_):
    images = random_images(p['n_images'], p['resolution'], dev)
    seed_everything(0)
    teacher = get_model(p['teacher'], NUM_CLASSES, images.mean, images.std).to(dev, memory_format=torch.channels_last).eval().requires_grad_(False)
    loops = {}
    for name, cache in (('kd', 0), ('kd_cached', 1)):
        cfg = KDConfig(student=p['student'], epochs=p['kd_epochs'], batch_size=p['kd_batch'], augment='crop_flip', teacher_cache=cache,
                       precision=precision, compile=compile_)
        _, res = distill_student(cfg, teacher, images, None, dev, progress=False)
        h = res['history'][1:] or res['history']                      # the first epoch warms up (allocator, cuDNN, compile)
        loops[name] = (sum(e['images'] for e in h) / sum(e['seconds'] for e in h), res)
    prec = loops['kd'][1]['precision']
    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == 'bf16')
    # ceilings on one resident batch, same precision, memory format and compile setting as the loop
    b = p['kd_batch']
    x = images.images[:b].to(dev).contiguous(memory_format=torch.channels_last)
    student = get_model(p['student'], NUM_CLASSES, images.mean, images.std).to(dev, memory_format=torch.channels_last)
    fwd = maybe_compile(student, compile_)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    with torch.no_grad(), autocast(): t_logits = teacher(x).float()
    def student_step():
        with autocast(): s = fwd(x)
        loss = kd_loss(s, t_logits); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    def teacher_fwd(xt):
        with torch.no_grad(), autocast(): teacher(xt)
    s_rate = rate(student_step, b, p['ceiling_steps'], p['ceiling_warmup'], dev)
    t_rate = rate(lambda: teacher_fwd(x), b, p['ceiling_steps'], p['ceiling_warmup'], dev)          # at the KD batch, as the loop runs it
    xt = images.images[:p['teacher_batch']].to(dev).contiguous(memory_format=torch.channels_last)
    tc_rate = rate(lambda: teacher_fwd(xt), len(xt), p['ceiling_steps'], p['ceiling_warmup'], dev)  # at the cache's batch
    both = 1 / (1 / s_rate + 1 / t_rate)
    # the teacher-forward loop: building the cache (augmentation + forward over every image, as the library does it)
    aug = BatchAugment('crop_flip'); d = images.images.to(dev)
    TeacherCache(teacher, d[:p['teacher_batch']], aug, 1, batch_size=p['teacher_batch'], autocast=autocast)   # warm-up
    sync(dev); tc = TeacherCache(teacher, d, aug, 2, batch_size=p['teacher_batch'], autocast=autocast); sync(dev)
    return dict(
        kd=stage(loops['kd'][0], both, precision=prec, compile=compile_, channels_last=True,
                 ceiling_parts=dict(student_step=round(s_rate, 1), teacher_forward=round(t_rate, 1)), batch=b),
        kd_cached=stage(loops['kd_cached'][0], s_rate, precision=prec, compile=compile_, channels_last=True, teacher_cache=1, batch=b),
        teacher_forward=stage(2 * len(d) / tc.seconds, tc_rate, precision=prec, compile=False, channels_last=True, batch=len(xt)),
    )


def ddpm_cfg(p, precision, compile_, channels_last, steps):
    return DDPMConfig(dataset='cifar10', native=False, block_out_channels=tuple(p['ddpm_widths']), layers_per_block=p['ddpm_layers'],
                      batch_size=p['ddpm_batch'], steps=steps, lr=5e-4, precision=precision, compile=compile_, channels_last=channels_last)


def ddpm_train_stage(p, dev, precision, compile_, channels_last):
    data = random_images(p['n_images'], p['resolution'], dev)
    total = p['ddpm_warmup'] + p['ddpm_steps']
    cfg = ddpm_cfg(p, precision, compile_, channels_last, total)
    with tempfile.TemporaryDirectory() as d:
        train_ddpm(cfg, data, cache=d, device=dev, progress=False, stop_after=p['ddpm_warmup'], save_every=total)   # warm-up, checkpointed
        gen = train_ddpm(cfg, data, cache=d, device=dev, progress=False, save_every=total)                          # resumes: the timed steps
    tr = gen.meta['training']
    # ceiling: ddpm_loss + backward + AdamW on one resident batch
    seed_everything(0)
    unet = build_unet(cfg, p['resolution'], 3, NUM_CLASSES).to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    fwd = maybe_compile(unet, compile_)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, **(dict(fused=True) if cfg.fused and dev.type == 'cuda' else {}))
    alphas = make_scheduler('ddpm', cfg.noise_config()).alphas_cumprod.to(dev)
    batch = ddpm_batch(cfg, data.images.to(dev), data.labels.to(dev), alphas, NUM_CLASSES, 0)
    prec = cfg.train_precision(dev)
    def step():
        loss = ddpm_loss(fwd, batch, prec, channels_last); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    ceil = rate(step, cfg.batch_size, p['ceiling_steps'], p['ceiling_warmup'], dev)
    return stage(tr['images_per_s'], ceil, precision=tr['precision'], compile=tr['compile'], channels_last=tr['channels_last'],
                 fused_adamw=tr['fused_adamw'], steps_timed=p['ddpm_steps'])


def sampling_stage(p, dev, cuda_graphs, scale=2.0):
    cfg = ddpm_cfg(p, 'auto', False, False, 1)
    seed_everything(0)
    unet = build_unet(cfg, p['resolution'], 3, NUM_CLASSES)
    gen = DDPMGenerator(unet, cfg.noise_config(), [str(i) for i in range(NUM_CLASSES)], dict(key='bench'), dev,
                        batch_size=p['sample_batch'], cuda_graphs=cuda_graphs)
    ids = torch.arange(p['n_samples']) % NUM_CLASSES
    gen.generate(ids[:p['sample_batch']], scale, p['num_steps'], 'ddim', seed=1)     # warm-up (and graph capture)
    sync(dev); t0 = time.perf_counter()
    gen.generate(ids, scale, p['num_steps'], 'ddim', seed=0)
    sync(dev); loop = len(ids) / (time.perf_counter() - t0)
    used = gen.sampling
    b = p['sample_batch']; x = torch.randn(b, 3, p['resolution'], p['resolution'], device=dev)
    t = torch.tensor(500, device=dev); y = ids[:b].to(dev)
    def fwd():
        with torch.no_grad(): gen.eps(x, t, y, scale)                  # the guided pass: one UNet forward on 2B images
    ceil = rate(fwd, b, p['ceiling_steps'], p['ceiling_warmup'], dev) / p['num_steps']
    return stage(loop, ceil, precision=used['precision'], cuda_graphs=used['cuda_graphs'], guidance_scale=scale, num_steps=p['num_steps'],
                 sampler='ddim', batch=b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='auto'); ap.add_argument('--preset', choices=list(PRESETS), default=None)
    ap.add_argument('--tiny', action='store_true', help='the tiny preset (CI)')
    ap.add_argument('--precision', default='auto', choices=('auto', 'bf16', 'fp32'))
    ap.add_argument('--compile', action='store_true', help='torch.compile the student and the UNet (loops and ceilings)')
    ap.add_argument('--channels-last', action='store_true', help='channels-last UNet in DDPM training')
    ap.add_argument('--no-cuda-graphs', action='store_true', help='sample without CUDA graphs')
    ap.add_argument('--stages', default='kd,ddpm_train,sampling', help='comma-separated: kd (with kd_cached, teacher_forward), ddpm_train, sampling')
    ap.add_argument('--out', default=None, help='also write the JSON here')
    a = ap.parse_args(argv)
    dev = get_accelerator(a.device).device
    preset = 'tiny' if a.tiny else a.preset or ('gpu' if dev.type == 'cuda' else 'cpu')
    p = PRESETS[preset]
    t0 = time.time(); stages = {}
    todo = a.stages.split(',')
    if 'kd' in todo: stages |= kd_stages(p, dev, a.precision, a.compile)
    if 'ddpm_train' in todo: stages['ddpm_train'] = ddpm_train_stage(p, dev, a.precision, a.compile, a.channels_last)
    if 'sampling' in todo: stages['sampling'] = sampling_stage(p, dev, not a.no_cuda_graphs)
    hw = hardware_info()
    out = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
               command=' '.join(['python', 'tools/bench_gpu.py'] + [shlex.quote(s) for s in (sys.argv[1:] if argv is None else argv)]),
               device=str(dev), device_name=(hw.get('gpus') or [hw['processor']])[0], torch=torch.__version__, hardware=hw,
               omp_num_threads=os.environ.get('OMP_NUM_THREADS'), preset=preset, sizes=p,
               flags=dict(precision=a.precision, precision_kd=resolve_precision(a.precision, dev),
                          precision_ddpm=DDPMConfig(precision=a.precision).train_precision(dev), compile=a.compile,
                          channels_last_ddpm=a.channels_last, cuda_graphs=bool(stages.get('sampling', {}).get('cuda_graphs'))),
               stages=stages, seconds=round(time.time() - t0, 1))
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(text + '\n')
    return out


if __name__ == '__main__':
    main()
