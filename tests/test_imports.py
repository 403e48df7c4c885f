"""The module order of the design (`nbs/NN_<module>.ipynb`, `NNa_` before `NNb_`): a module imports only modules numbered below it, and every
import of a dmkd module is at the top of its file (none inside a function, where it could dodge that order)."""
import ast, re, subprocess, sys

from conftest import NBS, ROOT

ORDER = [m.group(1) for f in sorted(NBS.glob('[0-9][0-9]*_*.ipynb')) if (m := re.match(r'\d\d[a-z]?_(\w+)\.ipynb$', f.name))]


def _dmkd_imports(tree):
    "Every (node, dmkd module name) imported in `tree`."
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or '').startswith('dmkd.')):
            yield node, (node.module or '').removeprefix('dmkd.') if node.level == 0 else node.module
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('dmkd.'): yield node, a.name.removeprefix('dmkd.')


def test_modules_import_only_modules_below_them_at_the_top():
    assert ORDER[:4] == ['base', 'core', 'data', 'models'] and ORDER.index('inversion') < ORDER.index('baselines') < ORDER.index('runs') < ORDER.index('sweeps') < ORDER.index('tables'), ORDER
    problems = []
    for name in ORDER:
        tree = ast.parse((ROOT / 'dmkd' / f'{name}.py').read_text())
        top = {id(n) for n in tree.body}
        for node, mod in _dmkd_imports(tree):
            if mod not in ORDER: continue
            if ORDER.index(mod) >= ORDER.index(name): problems.append(f"dmkd/{name}.py:{node.lineno} imports {mod}, which stands above it")
            if id(node) not in top: problems.append(f"dmkd/{name}.py:{node.lineno} imports {mod} inside a function")
    assert not problems, '\n'.join(problems)


def test_the_sweep_driver_and_the_records_need_no_torch():
    """`dmkd_sweep` runs notebooks in child processes and reads records; `dmkd.base` and `dmkd.records` are what it needs
    from below: none of them imports torch, so a driver (one per sitting, one per run on Ray or SLURM) starts in a fraction
    of a second instead of the seconds a torch import takes."""
    code = ('import sys, dmkd.sweeps, dmkd.records, dmkd.base; '
            'print(",".join(m for m in ("torch", "accelerate", "torchvision", "diffusers") if m in sys.modules))')
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == '', p.stdout + p.stderr
