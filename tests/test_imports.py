"""The module order of the design (`nbs/NN_<module>.ipynb`, `NNa_` before `NNb_`): a module imports only modules numbered below it, and every
import of a dmkd module is at the top of its file (none inside a function, where it could dodge that order)."""
import ast, re

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
    assert ORDER[:3] == ['core', 'data', 'models'] and ORDER.index('inversion') < ORDER.index('baselines') < ORDER.index('runs') < ORDER.index('sweeps') < ORDER.index('tables'), ORDER
    problems = []
    for name in ORDER:
        tree = ast.parse((ROOT / 'dmkd' / f'{name}.py').read_text())
        top = {id(n) for n in tree.body}
        for node, mod in _dmkd_imports(tree):
            if mod not in ORDER: continue
            if ORDER.index(mod) >= ORDER.index(name): problems.append(f"dmkd/{name}.py:{node.lineno} imports {mod}, which stands above it")
            if id(node) not in top: problems.append(f"dmkd/{name}.py:{node.lineno} imports {mod} inside a function")
    assert not problems, '\n'.join(problems)
