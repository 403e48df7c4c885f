"""Benchmark: every key of the model zoo trained as a `digits` teacher with the default recipe on this machine.

    python tools/bench_zoo.py [--keys vgg11,wrn_40_2] [--epochs 15] [--device auto]

Prints one markdown row per key: test accuracy, training images/s, training seconds and wall seconds (including
per-epoch evaluation). Teachers come from (and go to) the cache, so a second run only prints; delete
`data/cache/teachers` (or set DMKD_CACHE) to measure again.
"""
import argparse, time

from dmkd.models import MODELS, count_params, get_model
from dmkd.train import TrainConfig, get_teacher

ISSUE_KEYS = 'resnet8,resnet20,resnet18,resnet34,vgg11,wrn_16_1,wrn_16_2,wrn_40_1,wrn_40_2,resnet18_imagenet,resnet50_imagenet'

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--keys', default=ISSUE_KEYS, help="comma-separated zoo keys, or 'all'")
    ap.add_argument('--epochs', type=int, default=TrainConfig.epochs)
    ap.add_argument('--device', default='auto')
    a = ap.parse_args()
    keys = list(MODELS) if a.keys == 'all' else a.keys.split(',')
    print(f"| key | params (M) | test acc (%) | train img/s | train s | wall s |\n|---|---|---|---|---|---|", flush=True)
    for k in keys:
        t0 = time.time()
        _, m = get_teacher(dataset='digits', arch=k, epochs=a.epochs, device=a.device, progress=False)
        p = count_params(get_model(k, 10)) / 1e6
        print(f"| {k} | {p:.2f} | {m['accuracy']:.2f} | {m['images_per_s']:.0f} | {m['train_seconds']:.0f} | {m['wall_seconds']:.0f} |", flush=True)
