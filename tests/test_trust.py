"""Nothing wrong is ever trusted (issue 19): a damaged cache entry, a non-finite loss, a bad knob, an unwritable reports
folder, a mixed-size ImageFolder tree and a read-only cache, each through the one run pipeline (`dmkd.runs`) as a user
meets it. Every test here failed on the code before issue 19 (a damaged teacher gave a record of 10 % with a `nan` KD loss;
a bad knob failed after the teacher was trained; a cached run rewrote its student; a mixed-size tree had no `size`)."""
import os, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from conftest import bin_path, tiny_teacher
from test_cli import _here
from test_distill import ARGS, store  # noqa: F401  (the store fixture: 300 images of an untrained DDPM, made once per run)
from dmkd.core import DamagedError, KnobError, read_json
from dmkd.runs import run, run_parser, run_spec
from dmkd.train import TrainConfig, load_classifier, save_classifier, teacher_dir

TINY = dict(teacher='resnet8', teacher_epochs=3, student='resnet8', epochs=1, batch_size=32)


def _teacher_file(cache: Path) -> Path:
    _, meta = tiny_teacher(into=cache)
    return teacher_dir(TrainConfig(dataset='digits', arch='resnet8', epochs=3), meta['data_digest'], cache) / 'model.safetensors'


def test_damaged_teacher_stops_the_main_job(tmp_path, store):
    "One changed byte in a cached teacher: dmkd_distill exits with an error naming the file, and writes no record."
    weights = _teacher_file(tmp_path / 'cache')
    raw = bytearray(weights.read_bytes()); raw[len(raw) // 2] ^= 0xFF; weights.write_bytes(raw)
    p = subprocess.run([bin_path('dmkd_distill'), *ARGS, '--store', str(store), '--reports', str(tmp_path / 'reports'), '--quiet'],
                       env=dict(os.environ, DMKD_CACHE=str(tmp_path / 'cache')), capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and f'{weights} is damaged' in p.stderr, p.stderr[-2000:]
    assert p.returncode == 2 and p.stderr.startswith('dmkd_distill: error: ') and 'delete it and model.json' in p.stderr
    assert 'Traceback' not in p.stderr                                 # one line: what is damaged and what to do
    assert not list((tmp_path / 'reports').rglob('*.json'))


def test_nan_loss_stops_the_run_without_a_record(tmp_path, store):
    "A teacher with a valid checksum whose outputs are not numbers: KD stops at its first step, no record, no student."
    weights = _teacher_file(tmp_path / 'cache')
    net, meta = load_classifier(weights)
    with torch.no_grad(): next(net.parameters()).fill_(float('nan'))
    save_classifier(net, weights, {k: v for k, v in meta.items() if k != 'sha256'})
    spec = run_spec(**TINY, store=str(store))
    with pytest.raises(FloatingPointError, match=r'KD loss was not finite at optimiser step 0 \(epoch 1\)'):
        run(spec, cache=tmp_path / 'cache', reports=tmp_path / 'reports', device='cpu', progress=False)
    assert not list((tmp_path / 'reports').rglob('*.json'))
    assert not list((tmp_path / 'cache').rglob('students/*/model.safetensors'))


@pytest.mark.parametrize('flag, value, message', [
    ('--guidance-scale', '-1', 'guidance_scale must be >= 1'),
    ('--teacher-epochs', '0', 'teacher_epochs must be at least 1, got 0'),
    ('--n-per-class', '0', 'n_per_class must be at least 1, got 0'),
])
def test_a_bad_knob_fails_before_any_work(tmp_path, flag, value, message, monkeypatch, capsys):
    """A bad value stops the main job at once, named as the user gave it, before a teacher, generator or store is made.
    The first from a shell (the installed script), the others through its entry point in-process."""
    cmd = ['dmkd_distill', flag, value, '--quiet', '--reports', str(tmp_path / 'reports')]
    t0 = time.time()
    if flag == '--guidance-scale':
        p = subprocess.run([bin_path(cmd[0]), *cmd[1:]], env=dict(os.environ, DMKD_CACHE=str(tmp_path / 'cache')),
                           capture_output=True, text=True, timeout=300)
    else:
        monkeypatch.setenv('DMKD_CACHE', str(tmp_path / 'cache'))
        p = _here(cmd, tmp_path, monkeypatch, capsys)
    print(f"dmkd_distill {flag} {value}: failed in {time.time() - t0:.1f}s")
    assert p.returncode == 2 and f'dmkd_distill: error: {message}' in p.stderr and 'Traceback' not in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / 'cache').exists()                                # nothing was built


def test_a_bad_notebook_parameter_fails_in_the_parameters_cell(tmp_path):
    "`papermill nbs/distill.ipynb -p epochs two`: the spec cell names the parameter and its type (it was a TypeError about `<`)."
    root = Path(__file__).resolve().parent.parent
    t0 = time.time()
    p = subprocess.run([sys.executable, '-m', 'papermill', 'nbs/distill.ipynb', str(tmp_path / 'out.ipynb'), '-p', 'epochs', 'two',
                        '-p', 'cache', str(tmp_path / 'cache')], cwd=root, capture_output=True, text=True, timeout=600)
    print(f"papermill nbs/distill.ipynb -p epochs two: failed in {time.time() - t0:.1f}s")
    assert p.returncode != 0 and "epochs must be int, got 'two' (str)" in p.stdout + p.stderr
    assert not (tmp_path / 'cache').exists()
    # a notebook's own list parameter given with -p (a string): named with the form that works, before any work
    p = subprocess.run([sys.executable, '-m', 'papermill', 'nbs/generator_curve.ipynb', str(tmp_path / 'curve.ipynb'), '-p', 'at',
                        '[250, 500]', '-p', 'cache', str(tmp_path / 'cache')], cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "at must be a list of optimiser steps, got '[250, 500]'" in p.stdout + p.stderr, p.stderr[-2000:]
    assert "-y 'at: [250, 500]'" in p.stdout + p.stderr and not (tmp_path / 'cache').exists()


def test_an_unwritable_reports_folder_fails_first(tmp_path):
    "A reports root that cannot hold records is reported before the teacher is trained, not after the run."
    (tmp_path / 'reports').write_text('a file where the reports folder should be')
    with pytest.raises(PermissionError, match='Cannot write results records to'):
        run(run_spec(**TINY), cache=tmp_path / 'cache', reports=tmp_path / 'reports', device='cpu', progress=False)
    assert not (tmp_path / 'cache').exists()


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob('*')}


def test_a_finished_run_only_reads_the_cache(tmp_path, store):
    """Run a spec, then run it again: the second run writes nothing in the cache (no lock, no rewritten student), so a
    shared read-only cache that already holds everything can be used. The two records agree."""
    tiny_teacher(into=tmp_path / 'cache')
    spec = run_spec(**TINY, store=str(store))
    first = run(spec, cache=tmp_path / 'cache', device='cpu', progress=False, record=False)
    for lock in (tmp_path / 'cache').rglob('*.lock'): lock.unlink()
    before = _snapshot(tmp_path / 'cache')
    again = run(spec, cache=tmp_path / 'cache', device='cpu', progress=False, record=False)
    assert _snapshot(tmp_path / 'cache') == before
    assert again['student_acc'] == first['student_acc'] and again['student_key'] == first['student_key']


def _tree(root: Path):
    "Two classes of PNGs of mixed sizes (10x12 and 14x14), in train/ and test/."
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for split, n in (('train', 6), ('test', 4)):
        for c, shade in (('dark', 40), ('light', 210)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = (10, 12) if i % 2 else (14, 14)
                x = (torch.full((h, w, 3), shade) + torch.randint(-20, 20, (h, w, 3), generator=g)).clamp(0, 255).to(torch.uint8)
                Image.fromarray(x.numpy()).save(root / split / c / f'{i}.png')


def test_a_mixed_size_imagefolder_tree_goes_through_the_main_job(tmp_path):
    "`size` decodes every image of the tree at one square size for the teacher, the test split, the DDPM and the store."
    _tree(tmp_path / 'tree')
    kw = dict(dataset='imagefolder', teacher='resnet8', teacher_epochs=1, student='resnet8', epochs=1, batch_size=4, n_per_class=2,
              num_steps=2, ddpm_steps=2, ddpm_block_out_channels=[16, 16], ddpm_batch_size=4)
    with pytest.raises(ValueError, match='pass size=<pixels>'):
        run(run_spec(**kw), root=tmp_path / 'tree', cache=tmp_path / 'cache', device='cpu', progress=False, record=False)
    rec = run(run_spec(**kw, size=8), root=tmp_path / 'tree', cache=tmp_path / 'cache', reports=tmp_path / 'reports', device='cpu', progress=False)
    assert rec['n_images'] == 4 and rec['spec']['teacher']['size'] == 8 and rec['_images'].shape[-2:] == (8, 8)
    assert read_json(rec['record'])['dataset'] == 'imagefolder'
    assert run_parser().parse_args(['--size', '8']).size == 8                        # the same knob on the command line
    with pytest.raises(KnobError, match="size must be None, or for an imagefolder tree"): run_spec(size=8)


def test_damaged_store_shard_is_named(tmp_path, store):
    "A changed byte in a store shard: the run stops with the shard's name and what to do."
    import shutil
    shutil.copytree(store, tmp_path / 'store')
    shard = sorted((tmp_path / 'store').glob('shard_*.safetensors'))[0]
    raw = bytearray(shard.read_bytes()); raw[-7] ^= 0xFF; shard.write_bytes(raw)
    tiny_teacher(into=tmp_path / 'cache')
    with pytest.raises(ValueError, match=f'Shard {shard.name} in .* does not match the checksum in the manifest; delete it'):
        run(run_spec(**TINY, store=str(tmp_path / 'store')), cache=tmp_path / 'cache', device='cpu', progress=False, record=False)
