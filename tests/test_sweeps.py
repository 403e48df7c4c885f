"The sweep runner from a shell: a tiny throwaway notebook, parallel runs, a killed sweep resumes, a finished sweep only rebuilds its report."
import contextlib, json, os, signal, subprocess, sys, time
from pathlib import Path

import nbformat
import pytest

from dmkd.sweeps import collect_records, run_sweep


def _nb(path: Path, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata['kernelspec'] = dict(name='python3', display_name='python3', language='python')
    nb.cells = [nbformat.v4.new_code_cell('x: float = 1.0  # a number\nseed: int = 0  # seed\nreports: str = ""  # records', metadata=dict(tags=['parameters'])),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


# plain json, no dmkd/torch import: the kernels start fast (write_record and collect_records are tested in nbs/10a_sweeps.ipynb)
RUN = ('import json, pathlib, time\ntime.sleep(float(x))\nout = pathlib.Path(reports, "results"); out.mkdir(parents=True, exist_ok=True)\n'
       'out.joinpath(f"toy-{seed}.json").write_text(json.dumps(dict(schema=2, kind="run", real_data=dict(teacher="toy", student="toy", test="toy"), method="toy", x=x, seed=seed, student_acc=10 * x + seed)))')
REPORT = ('import json, pathlib\n'
          'accs = [json.loads(p.read_text())["student_acc"] for p in pathlib.Path(reports).glob("runs/toy/*/*/results/*.json")]\n'
          'pathlib.Path(reports, "report.json").write_text(json.dumps(sorted(accs)))')


def _sweep(tmp: Path, seeds, parallel=1, x=0.0):
    _nb(tmp / 'run.ipynb', RUN); _nb(tmp / 'report.ipynb', REPORT)
    (tmp / 'toy.yaml').write_text(
        f"name: toy\nseeds: {list(seeds)}\nparallel: {parallel}\nreport: {tmp / 'report.ipynb'}\n"
        f"jobs:\n  - {{name: a, notebook: {tmp / 'run.ipynb'}, grid: {{x: [{x}]}}}}\n")
    return [sys.executable, '-c', 'from dmkd.sweeps import sweep_main; sweep_main()', str(tmp / 'toy.yaml'), '--reports', str(tmp / 'reports')]


def test_sweep_killed_resumes_in_parallel_then_only_reports(tmp_path):
    """Kill the sweep while its second run sleeps; the rerun (2 runs at once) keeps the finished run, runs the killed one
    again without duplicating its record, and builds the report; a third run skips every run and only rebuilds the report."""
    cmd = _sweep(tmp_path, [0, 1, 2], x=3.0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    runs = tmp_path / 'reports/runs/toy/a'
    t0 = time.time()
    while not (runs / 'x-3_seed0/run.json').exists():
        assert time.time() - t0 < 240 and proc.poll() is None, 'first run did not finish'
        time.sleep(0.5)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    assert not (runs / 'x-3_seed1/run.json').exists() and not (tmp_path / 'reports/report.json').exists()
    done_first = (runs / 'x-3_seed0/run.json').stat().st_mtime
    p = subprocess.run(cmd + ['--parallel', '2'], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert '1 finished, 2 to run' in p.stdout
    assert (runs / 'x-3_seed0/run.json').stat().st_mtime == done_first
    assert json.loads((tmp_path / 'reports/report.json').read_text()) == [30.0, 31.0, 32.0]   # one record per seed
    for s in (0, 1, 2): assert (runs / f'x-3_seed{s}/notebook.ipynb').exists()
    (tmp_path / 'reports/report.json').unlink()
    stamps = {q: q.stat().st_mtime for q in runs.glob('*/run.json')}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and '3 finished, 0 to run' in p.stdout, p.stdout + p.stderr
    assert {q: q.stat().st_mtime for q in stamps} == stamps                       # nothing ran again
    assert (tmp_path / 'reports/report.json').exists()                            # the report was rebuilt
    assert len(collect_records(tmp_path / 'reports', 'toy')) == 3


def test_bad_sweep_file_says_what_to_do(tmp_path):
    (tmp_path / 'bad.yaml').write_text('name: bad\njobs: []\n')
    with pytest.raises(ValueError, match='has no jobs'): run_sweep(tmp_path / 'bad.yaml')
    (tmp_path / 'bad.yaml').write_text('name: bad\njobs: [{name: a, notebook: missing.ipynb}]\n')
    with pytest.raises(FileNotFoundError, match="Notebook missing.ipynb of job 'a' not found"): run_sweep(tmp_path / 'bad.yaml', reports=tmp_path)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='children die with the driver through PR_SET_PDEATHSIG, a Linux call')
def test_driver_killed_alone_takes_its_children_and_counts_once(tmp_path):
    """kill -9 of the sweep driver alone (not its process group): its papermill child and kernel die with it, and the
    rerun started at once ends with one record for the run (it ended with two, both listed in run.json)."""
    cmd = _sweep(tmp_path, [0], x=6.0)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / 'reports/runs/toy/a/x-6_seed0'
    t0 = time.time()
    while not list(run.glob('.attempt-*/notebook.ipynb')):            # papermill has started the notebook
        assert time.time() - t0 < 240 and proc.poll() is None, 'the run did not start'
        time.sleep(0.2)
    time.sleep(2.0)                                                    # the kernel is in its sleep
    proc.kill(); proc.wait(); killed = time.time()

    def children():
        out = []
        for p in Path('/proc').iterdir():
            try: line = (p / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
            except (OSError, ValueError): continue
            if str(run) in line and 'papermill' in line: out.append(p.name)
        return out
    while children() and time.time() - killed < 10: time.sleep(0.2)
    assert not children(), 'the papermill child outlived its driver'
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    time.sleep(max(0.0, killed + 8 - time.time()))                    # past the moment an orphaned kernel would have written
    assert len(list((run / 'results').glob('*.json'))) == 1
    assert json.loads((run / 'run.json').read_text())['records'] == ['results/toy-0.json']
    assert not list(run.glob('.attempt-*')), 'an orphaned attempt wrote after the rerun'
    assert len(collect_records(tmp_path / 'reports', 'toy')) == 1


def test_a_misspelt_sweep_parameter_stops_the_sweep(tmp_path):
    "A parameter the notebook does not declare is an error naming it before anything runs (papermill ran it on the defaults)."
    _sweep(tmp_path, [0])
    (tmp_path / 'typo.yaml').write_text(f"name: typo\njobs:\n  - {{name: a, notebook: {tmp_path / 'run.ipynb'}, parameters: {{X: 1.0}}}}\n")
    p = subprocess.run([sys.executable, '-c', 'from dmkd.sweeps import sweep_main; sweep_main()', str(tmp_path / 'typo.yaml'),
                        '--reports', str(tmp_path / 'reports')], capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "job 'a': X (did you mean x?)" in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / 'reports').exists()


def test_the_committed_sweeps_give_only_declared_parameters():
    "Every sweep file in sweeps/ passes the check (cifar10_gpu.yaml gave the fidelity job num_steps, which it does not take)."
    from dmkd.sweeps import check_parameters, load_sweep
    root = Path(__file__).resolve().parent.parent
    for f in sorted((root / 'sweeps').glob('*.yaml')):
        declared = check_parameters(load_sweep(f))
        assert 'report' in declared and len(declared) > 1, f.name


#: A toy run that resumes: `x` half-second steps, its progress saved in the run folder (which outlives an attempt), and the
#: process chain above its kernel (papermill, the executor's worker) written there for the kill tests.
RESUMABLE = (
    'import json, os, pathlib, time, psutil\n'
    'run = pathlib.Path(reports).resolve().parent; state = run / "toy-state.json"\n'
    'first = done = json.loads(state.read_text())["steps"] if state.exists() else 0\n'
    '(run / "toy-pids.json").write_text(json.dumps([dict(pid=p.pid, cmd=" ".join(p.cmdline())) for p in psutil.Process().parents()]))\n'
    'while done < int(x):\n'
    '    time.sleep(0.5); done += 1; state.write_text(json.dumps(dict(steps=done)))\n'
    'out = pathlib.Path(reports, "results"); out.mkdir(parents=True, exist_ok=True)\n'
    'out.joinpath(f"toy-{seed}.json").write_text(json.dumps(dict(schema=2, kind="run", real_data=dict(teacher="toy", student="toy", '
    'test="toy"), method="toy", x=x, seed=seed, student_acc=float(done), steps=done, resumed_from=first)))')


def _one_record(tmp: Path) -> dict:
    (rec,) = [json.loads(c) for c in _contents(tmp)]
    assert not list((tmp / 'reports').glob('runs/toy/a/*/.attempt-*')), 'an attempt was left behind'
    return rec


@pytest.mark.timeout(600)
def test_slurm_job_past_its_time_limit_is_requeued_and_resumes(tmp_path):
    """A submitit job (local cluster) that outlives its time limit gets SIGUSR2, is requeued (`RequeuedRun.checkpoint`) and
    resumes: one complete record whose run started from the steps the first attempt had saved, not from 0."""
    cmd = _toy4(tmp_path, "executor: {kind: slurm, cluster: local, timeout_min: 0.5, local_signal_delay_s: 15}\n",
                body=RESUMABLE, seeds=(0,), x=30.0)      # 15 s of steps; the signal comes 15 s into each 30-s slot
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    assert p.returncode == 0, p.stdout + p.stderr
    rec = _one_record(tmp_path)
    assert rec["steps"] == 30 and 0 < rec["resumed_from"] < 30, rec
    logs = ''.join(f.read_text() for f in (tmp_path / 'reports/runs/toy/_submitit').glob('*_log.*'))
    assert 'Requeued' in logs or 'requeu' in logs.lower(), logs[-2000:]


def _toy4(tmp: Path, executor: str = '', body: str = RUN, seeds=(0, 1, 2, 3), x: float = 0.0):
    "A 4-run toy sweep (no report) on `executor` (a sweep-file line), as a shell command."
    tmp.mkdir(parents=True, exist_ok=True); _nb(tmp / 'run.ipynb', body)
    (tmp / 'toy.yaml').write_text(f"name: toy\nseeds: {list(seeds)}\nparallel: 2\n{executor}jobs:\n  - {{name: a, notebook: {tmp / 'run.ipynb'}, grid: {{x: [{x}]}}}}\n")
    return [sys.executable, '-c', 'from dmkd.sweeps import sweep_main; sweep_main()', str(tmp / 'toy.yaml'), '--reports', str(tmp / 'reports'), '--no_report']


def _toy_records(seeds, x: float) -> list[str]:
    "The records the toy notebook `RUN` writes for `seeds` at `x`, as `_contents` gives them (the local executor's, checked below)."
    rec = lambda s: dict(schema=2, kind='run', real_data=dict(teacher='toy', student='toy', test='toy'), method='toy', x=x, seed=s,
                         student_acc=10 * x + s)
    return sorted(json.dumps(rec(s), sort_keys=True) for s in seeds)


def _contents(tmp: Path) -> list[str]:
    "Every record of the toy sweep, as sorted JSON text (what was measured; the run ids are the toy's own)."
    return sorted(json.dumps(json.loads(p.read_text()), sort_keys=True) for p in (tmp / 'reports').glob('runs/toy/*/*/results/*.json'))


def _free_port() -> int:
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(env: dict):
    """A real local Ray instance (`ray start --head` on 127.0.0.1, 2 CPUs), stopped on exit; yields its address.

    One at a time on this machine (a file lock shared by the xdist workers): `ray stop --force` stops every Ray process of
    the machine, so a second test's head was stopped under its running sweep when both Ray tests ran side by side (CI at
    0191e40: the relaunched driver could not reach its GCS and timed out after 400 s)."""
    from shutil import which
    from filelock import FileLock
    from conftest import run_root
    with FileLock(str(run_root() / 'ray-head.lock')):
        yield from _ray_head(env, which)


def _ray_head(env: dict, which):
    ray_bin = str(Path(sys.executable).parent / 'ray') if (Path(sys.executable).parent / 'ray').exists() else which('ray')
    port = _free_port()
    up = subprocess.run([ray_bin, 'start', '--head', '--node-ip-address', '127.0.0.1', '--port', str(port), '--num-cpus', '2', '--num-gpus', '0',
                         '--include-dashboard', 'false', '--disable-usage-stats'], capture_output=True, text=True, timeout=180, env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    try: yield f'127.0.0.1:{port}'
    finally: subprocess.run([ray_bin, 'stop', '--force'], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sweep_on_ray_and_submitit_gives_the_local_records(tmp_path):
    """Slow tier (about 3 minutes on 2 cores, most of it Ray's own start-up and its workers'; the default tier keeps the
    local executor's contract, `test_local_executor_gives_each_concurrent_run_its_own_gpu`, and submitit's requeue,
    `test_slurm_job_past_its_time_limit_is_requeued_and_resumes`). The same 4-run sweep through a real local Ray instance (`ray start --head`, 2 CPUs, stopped after) and submitit's
    local executor: the records the toy notebook writes (as the local executor gives them), each run once; run again, each executor finds every run finished. On the
    same Ray head (one per test run: starting one costs tens of seconds), a Ray sweep whose driver is killed finishes, and a
    run whose Ray worker is killed is retried and resumes."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED='0')
    want = _toy_records(seeds=(0, 1, 2, 3), x=0.0)      # what the local executor writes (the toy notebook's own records)
    with ray_head(env) as address:
        cmd = _toy4(tmp_path / 'ray', f"executor: {{kind: ray, address: '{address}', cpus_per_run: 1}}\n")
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        assert _contents(tmp_path / 'ray') == want
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert again.returncode == 0 and '4 finished, 0 to run' in again.stdout, again.stdout + again.stderr
        _ray_driver_killed_mid_sweep_finishes_without_duplicates(tmp_path / 'killed', env, address)
        _ray_worker_killed_mid_run_is_retried_and_resumes(tmp_path / 'worker', env, address)
    cmd = _toy4(tmp_path / 'slurm', "executor: {kind: slurm, cluster: local, timeout_min: 10}\n")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _contents(tmp_path / 'slurm') == want and 'submitted 4 jobs' in p.stdout
    assert len(list((tmp_path / 'slurm/reports/runs/toy/_submitit').glob('*_result.pkl'))) == 4
    again = subprocess.run(cmd + ['--executor', 'slurm'], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and '4 finished, 0 to run' in again.stdout, again.stdout + again.stderr


def test_local_executor_gives_each_concurrent_run_its_own_gpu(tmp_path):
    """With two GPUs visible, the two runs that execute at once each see one of them (`CUDA_VISIBLE_DEVICES` of its kernel);
    every run, the first one that runs alone included, gets the sweep's thread count (a run's numbers depend on it)."""
    env = 'gpu=__import__("os").environ.get("CUDA_VISIBLE_DEVICES"), threads=__import__("os").environ.get("OMP_NUM_THREADS")'
    body = RUN.replace('student_acc=10 * x + seed)', f'student_acc=10 * x + seed, {env})')
    p = subprocess.run(_toy4(tmp_path, body=body, seeds=(0, 1, 2), x=1.0), capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES='0,1'))
    assert p.returncode == 0, p.stdout + p.stderr
    got = [json.loads(c) for c in _contents(tmp_path)]
    assert sorted(json.dumps({k: v for k, v in r.items() if k not in ('gpu', 'threads')}, sort_keys=True) for r in got) \
        == _toy_records(seeds=(0, 1, 2), x=1.0)           # the records the Ray and submitit test expects of every executor
    gpus = [json.loads(c)['gpu'] for c in _contents(tmp_path)]
    assert sorted(gpus) == ['0', '0', '1'], gpus          # the first run alone on GPU 0, then the two concurrent runs on GPU 0 and GPU 1
    threads = [json.loads(c)['threads'] for c in _contents(tmp_path)]
    assert threads == [str(max(1, (os.cpu_count() or 1) // 2))] * 3, threads      # parallel 2: cores / 2 each, the first run too


def test_bad_executor_says_what_to_do(tmp_path):
    p = subprocess.run(_toy4(tmp_path, "executor: {kind: ray, partition: gpu}\n"), capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and 'takes address, cpus_per_run, gpus_per_run, not partition' in p.stderr, p.stderr[-2000:]
    p = subprocess.run(_toy4(tmp_path, "") + ['--executor', 'kubernetes'], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and 'use one of local, ray, slurm' in p.stderr, p.stderr[-2000:]


def _ray_worker_killed_mid_run_is_retried_and_resumes(tmp_path: Path, env: dict, address: str):
    """SIGKILL the Ray worker process running a run (its papermill child and kernel die with it): Ray retries the task, the
    retry takes over the dead worker's claim and the run resumes from its saved steps; one complete record."""
    cmd = _toy4(tmp_path, f"executor: {{kind: ray, address: '{address}', cpus_per_run: 1}}\n", body=RESUMABLE, seeds=(0,), x=16.0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    run, t0 = tmp_path / 'reports/runs/toy/a/x-16_seed0', time.time()
    while not ((run / 'toy-state.json').exists() and json.loads((run / 'toy-state.json').read_text())['steps'] >= 4):
        assert proc.poll() is None and time.time() - t0 < 300, 'the run did not start: ' + (proc.stdout.read() if proc.poll() is not None else '')
        time.sleep(0.2)
    (worker,) = [p['pid'] for p in json.loads((run / 'toy-pids.json').read_text()) if p['cmd'].startswith('ray::')]
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    rec = _one_record(tmp_path)
    assert rec['steps'] == 16 and rec['resumed_from'] >= 4, rec


def _ray_driver_killed_mid_sweep_finishes_without_duplicates(tmp_path: Path, env: dict, address: str):
    "Kill the driver of a Ray sweep (SIGKILL, its process group) while runs sleep; started again it finishes every run, one record per seed."
    tmp_path.mkdir(parents=True, exist_ok=True)
    cmd = _toy4(tmp_path, f"executor: {{kind: ray, address: '{address}', cpus_per_run: 1}}\n", x=2.0)
    start = lambda: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    proc, retried = start(), False
    runs, t0 = tmp_path / 'reports/runs/toy/a', time.time()
    while not list(runs.glob('*/run.json')):
        if proc.poll() is not None:     # the driver ended before any run finished: say why; once, start it again
            out = proc.stdout.read()    # (Ray's start-up on a loaded machine, seen once in CI at 17c363e; not what this test checks)
            assert not retried, f"the sweep driver exited {proc.returncode} before any run finished:\n{out[-3000:]}"
            print(f"the sweep driver exited {proc.returncode} before any run finished; starting it again:\n{out[-3000:]}")
            proc, retried = start(), True
        assert time.time() - t0 < 300, 'no run finished'
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    first = len(list(runs.glob('*/run.json'))); assert first < 4
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not list(runs.glob('*/.attempt-*'))                          # no half-written attempt left behind
    recs = [json.loads(c) for c in _contents(tmp_path)]
    assert sorted(r['seed'] for r in recs) == [0, 1, 2, 3]            # every run, each once
    for s in range(4): assert len(list((runs / f'x-2_seed{s}/results').glob('*.json'))) == 1
