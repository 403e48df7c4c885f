"""Benchmark: KD training throughput of the dmkd loop against a reference loop written the way the peers write it.

    python tools/bench_distill.py [--teacher vgg11] [--student resnet20] [--epochs 3] [--batch-size 64] [--device auto]

Both loops distil the same student architecture from the same teacher on the same synthetic images (the default
digits store, exported once as an ImageFolder tree of PNGs for the reference), with the same batch size, optimiser,
loss and number of epochs, in this one process:

* reference: torchvision `ImageFolder` of PNGs + `DataLoader` (2 workers) + PIL transforms (random crop with
  padding, flip, `ToTensor`, `Normalize`), float32 NCHW models, teacher forward on every batch;
* dmkd: `dmkd.distill.distill_student` as shipped (uint8 images on the device, batched augmentation, channels-last,
  bf16 autocast where the device computes bf16 natively), without and with the FKD-style teacher cache.

Prints images/s of the training loops (evaluation excluded from both) and the ratios. On a GPU it also prints the
student's pure forward+backward throughput on resident batches, the ceiling for any KD loop.
"""
import argparse, time, tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from dmkd.core import Where, get_device, resolve_precision
from dmkd.data import load_dataset
from dmkd.distill import KDConfig, distill_student, kd_loss
from dmkd.models import get_model
from dmkd.synth import StoreSpec, export_imagefolder, load_store, synthesize
from dmkd.train import get_teacher


def reference_loop(folder, teacher, student_key, epochs, batch_size, lr, temperature, device, workers=2):
    "The peers' KD loop: ImageFolder of PNGs, DataLoader, PIL transforms, float32, teacher forward every step."
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    mean, std = teacher.mean.flatten().tolist(), teacher.std.flatten().tolist()
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    ds = ImageFolder(str(folder), transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=False,
                                     pin_memory=device.type == 'cuda', persistent_workers=workers > 0)
    student = get_model(student_key, teacher.num_classes).to(device)
    # the reference feeds normalised floats, so bypass the Classifier's own normalisation on both models
    s_net, t_net = student.net, teacher.net.to(device).eval()
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    seen, secs = 0, 0.0
    for epoch in range(epochs):
        t0 = time.time()
        for x, _ in dl:
            x = x.to(device, non_blocking=True)
            with torch.no_grad(): t = t_net(x)
            loss = kd_loss(s_net(x), t, temperature)
            opt.zero_grad(); loss.backward(); opt.step()
            seen += len(x)
        if device.type == 'cuda': torch.cuda.synchronize()
        secs += time.time() - t0
    return seen / secs


def pure_step_rate(student_key, num_classes, batch_size, device, steps=50):
    "Student forward+backward on one resident batch under bf16 autocast: the ceiling for a KD loop on this device."
    m = get_model(student_key, num_classes).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, device=device).contiguous(memory_format=torch.channels_last)
    t = torch.randn(batch_size, num_classes, device=device)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize(); t0 = time.time()
        with torch.autocast('cuda', dtype=torch.bfloat16): s = m(x)
        loss = kd_loss(s, t); opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize()
    return steps * batch_size / (time.time() - t0)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--teacher', default='vgg11'); ap.add_argument('--student', default='resnet20')
    ap.add_argument('--epochs', type=int, default=3); ap.add_argument('--batch-size', type=int, default=64)
    ap.add_argument('--n-per-class', type=int, default=100); ap.add_argument('--cache-draws', type=int, default=1)
    ap.add_argument('--device', default='auto')
    a = ap.parse_args()
    dev = get_device(a.device)
    teacher, tmeta = get_teacher(dataset='digits', arch=a.teacher, device=dev, progress=False)
    store = synthesize(StoreSpec(n_per_class=a.n_per_class), 'digits', Where(device=dev.type, progress=False))
    images, test = load_store(store), load_dataset('digits', 'test')
    print(f"{a.student} from {a.teacher} on {len(images)} synthetic digits, batch {a.batch_size}, {a.epochs} epochs, device {dev} "
          f"(dmkd precision: {resolve_precision('auto', dev)})", flush=True)
    with tempfile.TemporaryDirectory() as d:
        folder = export_imagefolder(store, Path(d) / 'png')
        ref = reference_loop(folder, teacher, a.student, a.epochs, a.batch_size, 0.05, 4.0, dev)
    print(f"reference (ImageFolder PNG + DataLoader + PIL, fp32): {ref:8.1f} img/s", flush=True)
    rows = {}
    for name, kw in (('dmkd (fp32, for reference)', dict(precision='fp32')), ('dmkd', {}),
                     (f'dmkd + teacher cache ({a.cache_draws} draw)', dict(teacher_cache=a.cache_draws))):
        cfg = KDConfig(student=a.student, epochs=a.epochs, batch_size=a.batch_size, **kw)
        t0 = time.time()
        _, res = distill_student(cfg, teacher, images, None, dev, progress=False)
        wall = time.time() - t0
        rate = sum(h['images'] for h in res['history']) / res['kd_seconds']
        rows[name] = rate
        print(f"{name:<45s}: {rate:8.1f} img/s  ({rate / ref:.2f}x the reference; {wall:.1f}s wall incl. "
              f"{res['teacher_cache_seconds']:.1f}s of cache building)", flush=True)
    print(f"teacher cache speed-up over dmkd without it (training loop): {rows[list(rows)[2]] / rows['dmkd']:.2f}x")
    if dev.type == 'cuda':
        pure = pure_step_rate(a.student, teacher.num_classes, a.batch_size, dev)
        print(f"student pure forward+backward (bf16, resident batch): {pure:.1f} img/s; dmkd loop at {rows['dmkd'] / pure:.0%} of it")
