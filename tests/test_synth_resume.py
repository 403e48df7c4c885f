"""A real `dmkd_synthesize` run with the digits DDPM, killed with SIGKILL between shards, finishes only the remaining
shards when started again, never rewrites a finished one, and ends with the same images as an uninterrupted run.
The generator is the run's one tiny digits DDPM (20 optimiser steps) from the shared cache, trained there on first use, as
the notebooks do; every mechanism (shards, manifest, resume, process split) is the same as with the full-size one."""
import json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from conftest import TINY_DDPM_ARGS, bin_path, once_per_run
from dmkd.runs import synthesize_main
from dmkd.synth import load_store, read_manifest

ARGS = ['--dataset', 'digits', '--guidance-scale', '2', '--num-steps', '10', '--n-per-class', '20', '--shard-size', '25', '--device', 'cpu',
        *TINY_DDPM_ARGS]


def synth(out, *extra):
    return subprocess.run([bin_path('dmkd_synthesize'), *ARGS, '--out-dir', str(out), *extra], capture_output=True, text=True, timeout=1200)


def _make_ref(out):
    p = synth(out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert 'store ' in p.stdout and '200 images in 8 shards' in p.stdout


@pytest.fixture
def ref():
    "The uninterrupted one-process store of ARGS, made once per run (its run also caches the generator before the timed parts)."
    return once_per_run('synth_resume/ref', _make_ref)


@pytest.mark.timeout(1500)
def test_kill_between_shards_then_resume(tmp_path, ref):

    out = tmp_path / 'killed'
    p = subprocess.Popen([bin_path('dmkd_synthesize'), *ARGS, '--out-dir', str(out), '--quiet'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    while time.time() - t0 < 600 and p.poll() is None and len(list(out.glob('shard_*.json'))) < 2: time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    done = {f.stem: f.stat().st_mtime_ns for f in out.glob('shard_*.json')}
    assert 2 <= len(done) < 8, f"kill came too late or too early: {sorted(done)}"
    with pytest.raises(ValueError, match='unfinished'): load_store(out)

    again = synth(out)
    assert again.returncode == 0, again.stderr[-3000:]
    man = read_manifest(out)
    assert man['complete'] and man['n_images'] == 200 and len(man['shards']) == 8
    assert all((out / f'{k}.json').stat().st_mtime_ns == v for k, v in done.items()), "a finished shard was written again"
    a, b = load_store(out), load_store(ref)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.class_counts() == [20] * 10 and a.shape == (3, 32, 32)
    assert not list(out.glob('.*.tmp')), "a temporary file was left for a later run to trust"


def test_synthesize_refuses_mixed_settings(tmp_path, ref, monkeypatch, capsys):
    shutil.copytree(ref, tmp_path / 's')                # a folder that holds a finished store of ARGS
    # through the script's entry point in-process (a shell start costs seconds; the script runs from a shell in the
    # tests above)
    for argv, msg in [([*ARGS, '--num-steps', '5', '--out-dir', str(tmp_path / 's'), '--quiet'],
                       'holds a store made with other settings'),
                      (['--sampler', 'euler', '--out-dir', str(tmp_path / 'b')], "argument --sampler: invalid choice: 'euler' (choose from 'ddpm', 'ddim', 'dpm++')"),
                      (['--generator', 'gan', '--out-dir', str(tmp_path / 'b')], "argument --generator: invalid choice: 'gan'"),
                      (['--n-per-class', '0', '--out-dir', str(tmp_path / 'b')], 'n_per_class must be at least 1, got 0')]:
        monkeypatch.setattr(sys, 'argv', ['dmkd_synthesize', *argv])
        with pytest.raises(SystemExit) as e: synthesize_main()      # one line naming the knob, exit status 2
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err, (e.value.code, err[-2000:])
        if 'other settings' in msg: assert 'num_steps: 10 in the store, 5 now' in err
    assert not (tmp_path / 'b').exists()


@pytest.mark.timeout(1200)
def test_two_identical_runs_share_the_work(tmp_path, ref):
    """Two identical dmkd_synthesize runs started together on one store folder: one lock per store, so every shard is made
    once (it was made by both), and the store equals the one-process store."""
    procs = [subprocess.Popen([bin_path('dmkd_synthesize'), *ARGS, '--out-dir', str(tmp_path / 's')], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=1000)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    made = [int(m) for out in outs for m in re.findall(r'made (\d+) of 8 shards here', out)]
    assert sum(made) == 8, outs
    a, b = load_store(tmp_path / 's'), load_store(ref)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


@pytest.mark.timeout(1500)
def test_two_processes_split_the_shards(tmp_path, ref):
    "`accelerate launch` with 2 CPU processes: each makes its own shards, and the store equals a one-process store."
    env = dict(os.environ, OMP_NUM_THREADS='1')   # --multi_gpu launches through torchrun; with --device cpu Accelerate joins the processes over gloo
    two = subprocess.run([bin_path('accelerate'), 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
                          '--dynamo_backend', 'no', bin_path('dmkd_synthesize'), *ARGS,
                          '--out_dir', str(tmp_path / 'two'), '--quiet'],
                         capture_output=True, text=True, timeout=1200, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    man = read_manifest(tmp_path / 'two')
    assert man['complete'] and len(man['shards']) == 8
    assert sorted({s['process'] for s in man['shards']}) == [0, 1]       # both processes made shards
    a, b = load_store(tmp_path / 'two'), load_store(ref)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_a_shard_killed_mid_write_is_never_trusted(tmp_path, monkeypatch):
    """A shard write killed half-way (simulated in-process: the writer puts half a file down, then dies) leaves no file under
    a shard's final name and no temporary file; the next run makes that shard again and the store equals an uninterrupted one."""
    import dmkd.synth as S
    from dmkd.ddpm import DDPMConfig, DDPMGenerator, build_unet
    cfg = DDPMConfig(block_out_channels=(16, 16), attention=False)
    gen = DDPMGenerator(build_unet(cfg, 8, 1, 10), cfg.noise_config(), [str(i) for i in range(10)], dict(key='untrained'), 'cpu')
    kw = dict(spec=S.StoreSpec(n_per_class=2, num_steps=2), shard_size=5, resolution=16, channels=3, where=S.Where(device='cpu', progress=False))
    real, calls = S.save_file, []
    def dies_on_second_shard(tensors, filename):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b'half a shard'); raise KeyboardInterrupt('killed mid-write')
        return real(tensors, filename)
    monkeypatch.setattr(S, 'save_file', dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt): S.make_store(gen, tmp_path / 'killed', **kw)
    left = sorted(p.name for p in (tmp_path / 'killed').iterdir())
    assert 'shard_00001.safetensors' not in left, f"a half-written shard was left under its final name: {left}"
    assert not [n for n in left if n.endswith('.tmp')], f"a temporary file was left: {left}"
    monkeypatch.setattr(S, 'save_file', real)
    S.make_store(gen, tmp_path / 'killed', **kw)
    a, b = load_store(tmp_path / 'killed'), load_store(S.make_store(gen, tmp_path / 'ref', **kw))
    assert torch.equal(a.images, b.images) and read_manifest(tmp_path / 'killed')['complete']
