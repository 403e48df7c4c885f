"""Benchmark: images/s of dmkd's in-project DDPM sampler against a diffusers pipeline with the same weights.

    python tools/bench_sampler.py [--n 1000] [--batch 500] [--steps 25] [--scale 2] [--repeats 3] [--device auto]

The reference is a `diffusers.DiffusionPipeline` written the way diffusers' own class-conditional pipeline
(`DiTPipeline.__call__`) is: `progress_bar` over the scheduler's timesteps, `scale_model_input`, classifier-free
guidance by duplicating the latents, `scheduler.step`, and conversion to numpy at the end. Both use the same UNet
object, the same scheduler configuration, the same s, T, batch size and seeds, and both return uint8 images. Each
is timed `--repeats` times after a warm-up, alternating, in this one process; the best time of each is reported,
and the ratio dmkd / diffusers (>= 1.0 means dmkd is at least as fast). Uses the cached digits generator (trained
on first use).
"""
import argparse, time

import numpy as np
import torch
from diffusers import DiffusionPipeline

from dmkd.core import get_device, hardware_info
from dmkd.generators import make_scheduler
from dmkd.ddpm import get_ddpm


class ClassConditionalPipeline(DiffusionPipeline):
    "Class-conditional sampling with classifier-free guidance, as diffusers' DiTPipeline writes it, for a UNet2DModel."
    def __init__(self, unet, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, class_labels, null_class, guidance_scale=2.0, generator=None, num_inference_steps=25, output_type='np'):
        batch_size = len(class_labels)
        size, ch = self.unet.config.sample_size, self.unet.config.in_channels
        latents = torch.randn((batch_size, ch, size, size), generator=generator).to(self.device) * self.scheduler.init_noise_sigma
        class_labels = torch.tensor(class_labels, device=self.device).reshape(-1)
        class_null = torch.full((batch_size,), null_class, device=self.device)
        class_labels_input = torch.cat([class_labels, class_null], 0) if guidance_scale > 1 else class_labels
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            latent_model_input = torch.cat([latents] * 2) if guidance_scale > 1 else latents
            latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
            timesteps = torch.full((latent_model_input.shape[0],), int(t), device=self.device)
            noise_pred = self.unet(latent_model_input, timesteps, class_labels=class_labels_input).sample
            if guidance_scale > 1:
                cond_eps, uncond_eps = torch.split(noise_pred, len(noise_pred) // 2, dim=0)
                noise_pred = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
            latents = self.scheduler.step(noise_pred, t, latents, use_clipped_model_output=True).prev_sample
        samples = (latents / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
        return samples if output_type == 'np' else self.numpy_to_pil(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=1000); ap.add_argument('--batch', type=int, default=500)
    ap.add_argument('--steps', type=int, default=25); ap.add_argument('--scale', type=float, default=2.0)
    ap.add_argument('--repeats', type=int, default=3); ap.add_argument('--device', default='auto')
    a = ap.parse_args()
    dev = get_device(a.device)
    gen = get_ddpm(device=dev, progress=False); gen.batch_size = a.batch
    pipe = ClassConditionalPipeline(gen.unet, make_scheduler('ddim', gen.noise_config)).to(dev)
    pipe.set_progress_bar_config(disable=True)
    ids = torch.arange(a.n) % gen.num_classes

    def ours():
        return gen.generate(ids, a.scale, a.steps, 'ddim', seed=0)

    def theirs():
        out = []
        for i, s in enumerate(range(0, a.n, a.batch)):
            x = pipe(ids[s:s + a.batch].tolist(), gen.null_class, a.scale, torch.Generator().manual_seed(i), a.steps)
            out.append(torch.from_numpy((x * 255).round().astype(np.uint8)).permute(0, 3, 1, 2))
        return torch.cat(out)

    def timed(f):
        if dev.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter(); x = f()
        if dev.type == 'cuda': torch.cuda.synchronize()
        return time.perf_counter() - t0, x

    ours(); theirs()                                   # warm-up
    t_ours, t_theirs = [], []
    for _ in range(a.repeats):
        t, x1 = timed(ours); t_ours.append(t)
        t, x2 = timed(theirs); t_theirs.append(t)
    diff = (x1.float() - x2.float()).abs()
    hw = hardware_info()
    print(f"device {dev} ({hw.get('gpus', [hw['processor']])[0]}, {hw['cpu_count']} cores), torch {hw['torch']}")
    print(f"{a.n} images, batch {a.batch}, s={a.scale}, T={a.steps}, DDIM; {a.repeats} timed runs each, best shown")
    print(f"dmkd in-project sampler : {a.n / min(t_ours):8.1f} images/s  ({min(t_ours):.2f}s)")
    print(f"diffusers pipeline      : {a.n / min(t_theirs):8.1f} images/s  ({min(t_theirs):.2f}s)")
    print(f"ratio dmkd / diffusers  : {min(t_theirs) / min(t_ours):.2f}")
    print(f"same images: max |difference| {diff.max().item():.0f} of 255, mean {diff.mean().item():.3f}")


if __name__ == '__main__':
    main()
