#!/usr/bin/env python
"""Build the dmkd docs site from `nbs/` into a static folder, offline, without Quarto.

    python tools/build_docs.py                 # -> _docs/ (settings.ini `doc_path`)
    python tools/build_docs.py --site-dir /tmp/site --no-execute        # a quick look: experiment notebooks not run
    python tools/build_docs.py -p epochs=2 -p n_per_class=10           # cheap parameters (papermill -p style)
    python tools/build_docs.py --executed DIR   # tutorials from notebooks already executed (e.g. papermill outputs DIR/distill.ipynb)

Pages, and where they come from:

- Home: `nbs/index.ipynb`.
- API reference: every library notebook (`nbs/NN_*.ipynb`, the ones with `#| default_exp`), run through nbdev's own
  notebook processors (the ones `nbdev_docs` uses before Quarto): `show_doc` is added for every exported symbol and
  rendered by `tools/api_docs.py` (signature, parameter table, methods of classes, source link into settings.ini's
  `git_url`); exported source and `#| hide` cells are dropped. The examples are executed as `nbdev_test` executes them
  (or reused: content-keyed cache, `--executed`), so each entry shows its examples' output (tables, figures, values).
- Tutorials: every other notebook in `nbs/` (the experiment notebooks), executed top to bottom with the defaults of its
  `parameters` cell exactly as `nbdev_test` executes it (same cell flags skipped: `slow`, `cuda`, `notest`), so figures
  are visible. Their caches (teachers, stores, students under `data/cache`) are the ones `nbdev_test` fills, so after
  `nbdev_test` this mostly reads the cache. Results records they write go to a scratch copy of `reports/`, never into
  `reports/` itself.
- Results: an overview from `reports/README.md`, then one page per study (digits, CIFAR-10, GPU: one per sweep file)
  with its contents, every table under `reports/` with its settings line and links to its sweep and records, and each
  figure once (SVG where the report wrote SVG and PNG); a page that says how to make them when there is nothing yet.

Navigation is generated from the files found in `nbs/` at build time, so new notebooks appear without editing any
list. The rendered Markdown goes through MkDocs with the Material theme (built-in search), configured by `mkdocs.yml`
at the repository root; nbdev's publishing configuration (settings.ini `doc_*`) is left as it is.
"""
from __future__ import annotations

import argparse, json, os, re, shutil, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_FLAGS = ('notest', 'slow', 'cuda')  # as settings.ini `tst_flags`: cells nbdev_test does not run
RECORD_COLS = ('kind', 'method', 'dataset', 'teacher', 'student', 'source', 'generator', 'guidance_scale', 'num_steps', 'sampler',
               'strength', 'n_per_class', 'temperature', 'seed', 'teacher_acc', 'student_val_acc', 'student_acc')
IMG_EXT = ('.png', '.svg', '.jpg', '.jpeg', '.gif', '.webp')


# ---------------------------------------------------------------- notebooks
def notebooks(nbs: Path) -> dict:
    "The notebooks of `nbs/` by role: `home`, `api` (library notebooks) and `tutorials` (experiment notebooks)."
    from execnb.nbio import read_nb
    out = dict(home=None, api=[], tutorials=[])
    for f in sorted(nbs.glob('*.ipynb')):
        if f.name.startswith(('_', '.')): continue
        if f.name == 'index.ipynb': out['home'] = f; continue
        nb = read_nb(f)
        lib = any(c.cell_type == 'code' and re.search(r'^#\|\s*default_exp\s', c.source, re.M) for c in nb.cells)
        out['api' if lib else 'tutorials'].append(f)
    if out['home'] is None: raise FileNotFoundError(f"No index.ipynb in {nbs}: the home page is built from it.")
    return out


def page_name(f: Path, role: str) -> str:
    "Markdown file of notebook `f`: library `02_models.ipynb` -> `api/models.md`, experiment `distill.ipynb` -> `tutorials/distill.md`."
    if role == 'home': return 'index.md'
    return ('api/' if role == 'api' else 'tutorials/') + re.sub(r'^\d+[a-z]?_', '', f.stem) + '.md'


def title_of(nb) -> str:
    "The notebook's `# Title` (the first level-1 heading), else its file name."
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, re.M)
            if m: return m.group(1).strip()
    return ''


def set_params(nb, params: dict) -> list:
    """Override the `parameters` cell of `nb` (papermill's tag) with `params` ({name: Python literal text}) for the names it
    declares, as papermill's `-p` does (the assignments are appended to that cell); returns the names applied."""
    import ast
    done = []
    for c in nb.cells:
        if c.cell_type != 'code' or 'parameters' not in (c.get('metadata', {}).get('tags') or []): continue
        declared = set(re.findall(r'^(\w+)\s*[:=]', c.source, re.M))
        extra = []
        for k, v in params.items():
            if k not in declared: continue
            try: ast.literal_eval(v); lit = v
            except (ValueError, SyntaxError): lit = repr(v)
            extra.append(f'{k} = {lit}  # set by the docs build'); done.append(k)
        if extra: c.source = c.source.rstrip('\n') + '\n' + '\n'.join(extra)
    return done


def _execute(f: str, skip_flags=SKIP_FLAGS, params: dict | None = None) -> dict:
    "Run notebook `f` as `nbdev_test` does (in-process, from its folder, flagged cells skipped); returns the notebook."
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.process import NBProcessor
    f = Path(f)
    os.environ['IN_TEST'] = '1'
    nb = NBProcessor(f, procs=[], process=True, rm_directives=False).nb
    if params: set_params(nb, params)
    flags = set(skip_flags)

    def no_eval(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        d = getattr(cell, 'directives_', {}) or {}
        if d.get('eval:', [''])[0].lower() == 'false': return True
        return flags & d.keys()

    k = CaptureShell(f)
    t0 = time.time()
    with working_directory(f.parent):
        try: k.run_all(nb, exc_stop=True, preproc=no_eval)
        except Exception as e:
            raise RuntimeError(f"{f} failed while executing for the docs:\n{k.prettytb(fname=f)}") from e
    return dict(nb=nb, seconds=round(time.time() - t0, 1))


def _show_doc_source(cell) -> str | None:
    """What `exec_show_docs` must run of `cell` (None: nothing): as nbdev, export cells, `show_doc` cells and imports;
    unlike nbdev, of a cell that mixes imports with other code only its top-level imports (nbdev runs it whole, which
    here would train a model just to render a signature)."""
    import ast
    from nbdev import processors as P
    import warnings
    with warnings.catch_warnings():  # nbdev warns about mixed import cells; they are handled below
        warnings.simplefilter('ignore')
        if not P._do_eval(cell): return None
    if cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}: return cell.source
    trees = cell.parsed_()
    if P._show_docs(trees): return cell.source
    body = list(trees)  # parsed_() gives the top-level statements
    if all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body): return cell.source
    return '\n'.join(ast.unparse(n) for n in body if isinstance(n, (ast.Import, ast.ImportFrom))) or None


def _exec_show_docs_cls():
    from nbdev import processors as P
    from fastcore.basics import str2bool

    class exec_show_docs(P.exec_show_docs):
        "nbdev's `exec_show_docs`, running only the imports of cells that mix imports with other code."
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            if str2bool(getattr(self.nb, 'frontmatter_', {}).get('skip_showdoc', False)): return
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', cell.source, re.M)
            if m: self.module = m.group(1)
            src = _show_doc_source(cell)
            if src is None: return
            if not getattr(self, '_renderer', False):  # parameter tables, classes as classes, source links (tools/api_docs.py)
                self.k.run(f'import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import api_docs; api_docs.install()')
                self._renderer = True
            if src == cell.source: self.k.cell(cell)
            else: self.k.run(src)
            if self.k.exc: raise Exception(f"Error in cell {cell.idx_} while rendering show_doc:\n{src}") from self.k.exc
            if getattr(self, 'module', None) and cell.directives_.keys() & {'export', 'exports'}:
                # document the exported objects: a class defined in the kernel has no source file, so `show_doc` would lose
                # its fields' comments (their one-line docs); the package's class has them, and a source link
                self.k.run(f'from dmkd.{self.module} import *')
    return exec_show_docs


def _process(nb, api: bool):
    "nbdev's docs processors (minus the Quarto-only ones); `api`: add and execute `show_doc` for every exported symbol."
    from nbdev import processors as P
    from nbdev.process import NBProcessor
    procs = [P.populate_language, P.strip_ansi, P.hide_line, P.filter_stream_, P.rm_header_dash, P.clean_show_doc]
    if api: procs = [P.populate_language, P.add_show_docs] + procs[1:] + [_exec_show_docs_cls()]
    procs += [P.rm_export, P.clean_magics, P.hide_, P.strip_hidden_metadata]
    # exec_show_docs resolves `show_doc` links through the config; run from the repository root like nbdev does
    return NBProcessor(nb=nb, procs=procs).process() or nb


_re_dir = re.compile(r'^\s*#\|\s*(\S+?):?\s+(.*)$|^\s*#\|\s*(\S+)\s*$')


_re_bar = re.compile(r'\d+%\|.*\|\s*\d+/\d+|^\s*$')  # a tqdm progress bar line


def _clean_output(o):
    """An output as a static page shows it: streams with carriage returns resolved as a terminal would, tqdm progress
    bars dropped from stderr; live widgets (nothing to show without a kernel) dropped; empty outputs dropped."""
    o = dict(o)
    if o.get('output_type') == 'stream':
        text = ''.join(o.get('text', ''))
        lines = [ln.split('\r')[-1] for ln in text.split('\n')]
        if o.get('name') == 'stderr': lines = [ln for ln in lines if not _re_bar.search(ln)]
        text = '\n'.join(ln for ln in lines).strip('\n')
        if not text.strip(): return None
        o['text'] = text + '\n'
    elif 'application/vnd.jupyter.widget-view+json' in (o.get('data') or {}): return None
    return o


_CHECKS = {'test_eq', 'test_ne', 'test_fail', 'test_close', 'test_eq_type', 'test_warns', 'test_is', 'test_stdout'}


def _is_check(n) -> bool:
    "Is statement `n` a check: an `assert`, or a call of a fastcore `test_*` function?"
    import ast
    return isinstance(n, ast.Assert) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
                                         and getattr(n.value.func, 'id', '') in _CHECKS)


def split_checks(src: str) -> tuple[str, str]:
    """`src` without its checks, and the checks: a line goes when every statement on it is a check (the comment lines
    just above it go with it), so an example reads as usage and its checks can be shown apart."""
    import ast
    try: body = ast.parse(src).body
    except SyntaxError: return src, ''
    flags = {}
    for n in body:
        for ln in range(n.lineno, n.end_lineno + 1): flags.setdefault(ln, []).append(_is_check(n))
    lines, drop = src.splitlines(), {ln for ln, f in flags.items() if all(f)}
    for ln in sorted(drop):                      # comment lines right above a check belong to it
        k = ln - 1
        while k >= 1 and k not in flags and lines[k - 1].strip().startswith('#'): drop.add(k); k -= 1
    keep = '\n'.join(ln for i, ln in enumerate(lines, 1) if i not in drop).strip('\n')
    return keep, '\n'.join(ln for i, ln in enumerate(lines, 1) if i in drop).strip('\n')


def _tidy(nb, checks_last: bool = False):
    """Drop directive lines, honour `echo: false` / `output: false`, drop empty cells; `checks_last`: move the examples'
    checks to a "Tests" section at the end (`split_checks`). Return an nbformat notebook."""
    import nbformat
    cells = []
    for c in nb.cells:
        c = dict(c)
        src = c.get('source', '') or ''
        if isinstance(src, list): src = ''.join(src)
        if c['cell_type'] == 'code':
            d = {k.rstrip(':'): ' '.join(v) for k, v in (c.get('directives_') or {}).items()}
            lines, keep = src.splitlines(), []
            for ln in lines:
                m = _re_dir.match(ln)
                if m: d[(m.group(1) or m.group(3)).rstrip(':')] = (m.group(2) or '').strip(); continue
                keep.append(ln)
            src = '\n'.join(keep).strip('\n')
            if d.get('echo') == 'false': src = ''
            if d.get('output') == 'false': c['outputs'] = []
            outs = [o for o in map(_clean_output, c.get('outputs', [])) if o is not None]
            if not src and not outs: continue
            cells.append(dict(cell_type='code', source=src, outputs=[dict(o) for o in outs], execution_count=None,
                              metadata=dict(tags=[] if src else ['remove_input'])))
        elif c['cell_type'] == 'markdown':
            if src.strip(): cells.append(dict(cell_type='markdown', source=src, metadata={}))
    if checks_last:      # the examples teach; their checks (test_eq, test_fail, assert, ...) go under "Tests"
        checks = []
        for c in cells:
            if c['cell_type'] != 'code' or not c['source']: continue
            c['source'], moved = split_checks(c['source'])
            if moved: checks.append(dict(cell_type='code', source=moved, outputs=[], execution_count=None, metadata={}))
        cells = [c for c in cells if c['cell_type'] != 'code' or c['source'] or c['outputs']]
        for c in cells:
            if c['cell_type'] == 'code' and not c['source']: c['metadata'] = dict(tags=['remove_input'])
        if checks:
            cells += [dict(cell_type='markdown', metadata={}, source="## Tests\n\nThe checks of the examples above, as "
                           "`nbdev_test` and the test suite run them.")] + checks
    out = dict(cells=cells, metadata=dict(language_info=dict(name='python')), nbformat=4, nbformat_minor=4)
    return nbformat.reads(json.dumps(out), as_version=4)  # joins the list-of-lines outputs that execnb leaves


def symbol_pages(api: list) -> dict:
    """`{name: 'api/<page>.md#anchor'}` for every public function and class of the modules the library notebooks
    export (`__all__` of `dmkd/<module>.py`), pointing at its `show_doc` heading."""
    import ast
    out = {}
    for f in api:
        from execnb.nbio import read_nb
        src = '\n'.join(c.source for c in read_nb(f).cells if c.cell_type == 'code')
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
        mod = ROOT / 'dmkd' / (m.group(1).replace('.', '/') + '.py') if m else None
        if mod is None or not mod.exists(): continue
        tree = ast.parse(mod.read_text(encoding='utf-8'))
        names = set()
        for n in tree.body:
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '__all__' for t in n.targets):
                names = set(ast.literal_eval(n.value))
        for n in tree.body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names:
                anchor = re.sub(r'[^\w\s-]', '', n.name).strip().lower()  # MkDocs' toc slug of the show_doc heading
                out.setdefault(n.name, page_name(f, 'api') + '#' + anchor)
    return out


def add_links(nb, syms: dict, here: str):
    "Link `` `name` `` / `` `name()` `` / `` `dmkd.mod.name` `` in Markdown cells to the symbol's API entry (as nbdev's `add_links`)."
    if not syms: return nb
    up = '../' * here.count('/')
    pat = re.compile(r'(?<![\[\w])`(?:dmkd\.\w+\.)?(' + '|'.join(sorted(map(re.escape, syms), key=len, reverse=True)) + r')(\(\))?`(?![\]\w])')
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        c.source = '\n'.join(ln if ln.lstrip().startswith('#') else pat.sub(lambda m: f'[{m.group(0)}]({up}{syms[m.group(1)]})', ln)
                              for ln in c.source.split('\n'))
    return nb


def to_markdown(nb, dest: Path, syms: dict | None = None, here: str = '', checks_last: bool = False) -> Path:
    "Write `nb` as Markdown at `dest`, its figures as files in `<stem>_files/` beside it; `syms`: link symbols (see `add_links`)."
    from nbconvert import MarkdownExporter
    nbf = add_links(_tidy(nb, checks_last), syms or {}, here)
    from nbconvert.preprocessors import TagRemovePreprocessor
    ex = MarkdownExporter()
    ex.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}, enabled=True), enabled=True)
    body, res = ex.from_notebook_node(nbf, resources=dict(output_files_dir=f'{dest.stem}_files'))
    dest.parent.mkdir(parents=True, exist_ok=True)
    for name, data in (res.get('outputs') or {}).items():
        p = dest.parent / name; p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(data)
    # nbconvert names figure links "png"; give them the alt text the page's title suggests
    body = re.sub(r'!\[(png|svg|jpeg|jpg|svg\+xml)\]\(', '![figure](', body)
    dest.write_text(body, encoding='utf-8')
    return dest


def _executed_nb(f: Path, execute: bool, cache_dir: str | None, key: str, executed: str | None = None,
                 params: dict | None = None, reuse: bool = False):
    """Notebook `f` executed: the copy a caller ran (`executed/<name>.ipynb`), else the cached copy of content key `key`
    under `cache_dir`, else (`reuse`, no `params`) the outputs committed in `f` itself (a tutorial), else executed now
    (and cached); unexecuted when `execute` is off. Returns (notebook, reused)."""
    from execnb.nbio import read_nb, write_nb
    given = Path(executed) / f.name if executed else None
    cached = Path(cache_dir) / f'{f.stem}-{key}.ipynb' if (execute and cache_dir) else None
    if given is not None and given.exists(): return read_nb(given), True
    if cached is not None and cached.exists(): return read_nb(cached), True
    if not execute: return read_nb(f), False
    committed = read_nb(f)     # a tutorial that keeps one run's outputs in the repository (tools/run_tutorials.py)
    if reuse and not params and any(c.cell_type == 'code' and c.get('outputs') for c in committed.cells):
        return committed, True
    nb = _execute(f, params=params)['nb']
    if cached is None: return nb, False
    from dmkd.core import atomic_path
    cached.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cached) as tmp: write_nb(nb, tmp)
    return read_nb(cached), False


def _library(f: str, execute: bool = True, cache_dir: str | None = None, executed: str | None = None) -> dict:
    """Process one library notebook (in a fresh process: show_doc runs imports). Its examples are executed as `nbdev_test`
    executes them (or taken from `executed/<name>.ipynb`, or from the content-keyed cache), so the page shows their
    output (tables, figures, printed values) under each function's entry."""
    os.environ['IN_TEST'] = '1'
    t0 = time.time(); f = Path(f)
    nb, reused = _executed_nb(f, execute, cache_dir, exec_key(f), executed)
    title = title_of(nb)
    nb = _process(nb, api=True)
    return dict(nb=nb, title=title, seconds=round(time.time() - t0, 1), reused=reused)


def exec_key(f: Path, reports: Path | None = None, params: dict | None = None) -> str:
    """Content key of an executed notebook: the notebook, the library source (`dmkd/*.py`), `settings.ini`, and for a
    notebook that reads results records (`collect_records`, `read_records`) the tables and records under `reports/`.
    Equal keys: the executed notebook can be reused (its inputs, caches included, are content-keyed too)."""
    import hashlib
    h = hashlib.sha256(json.dumps(params or {}, sort_keys=True).encode())
    files = [Path(f), ROOT / 'settings.ini'] + sorted((ROOT / 'dmkd').rglob('*.py'))
    reads = re.search(r'collect_records|read_records', Path(f).read_text(encoding='utf-8'))
    if reads and reports and reports.is_dir(): files += sorted(p for p in reports.rglob('*') if p.is_file() and p.suffix in ('.json', '.csv', '.md'))
    for p in files: h.update(str(p.name).encode()); h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _tutorial(f: str, execute: bool, cache_dir: str | None = None, reports: str | None = None, params: dict | None = None,
              executed: str | None = None) -> dict:
    """Execute (or reuse the executed copy keyed by `exec_key` under `cache_dir`, or the copy `executed/<name>.ipynb` that a
    caller ran, e.g. with papermill) and process one experiment notebook."""
    t0 = time.time(); f = Path(f)
    key = exec_key(f, Path(reports) if reports else None, params)
    nb, reused = _executed_nb(f, execute, cache_dir, key, executed, params, reuse=cache_dir is not None)
    title = title_of(nb)
    return dict(nb=_process(nb, api=False), title=title, seconds=round(time.time() - t0, 1), reused=reused)


# ---------------------------------------------------------------- results page
def _md_section(text: str, base: Path, reports: Path, out: Path, demote: int) -> str:
    """Markdown of a file under `reports/` for the results page: headings demoted by `demote` levels; relative links and
    images that point at files under `reports/` are copied into the site (`results/...`); other relative links (outside
    `reports/`, or missing) become plain text, so the page has no broken link."""
    if demote: text = re.sub(r'^(#{1,6})(\s)', lambda m: '#' * min(6, len(m.group(1)) + demote) + m.group(2), text, flags=re.M)
    rep = reports.resolve()

    def link(m):
        alt, href = m.group(1), m.group(2)
        if re.match(r'^[a-zA-Z][a-zA-Z+.-]*:|^#|^/', href): return m.group(0)
        p = (base / href.split('#')[0]).resolve()
        if p.is_file() and p.is_relative_to(rep) and p.suffix != '.md':
            rel = p.relative_to(rep).as_posix()
            d = out / rel; d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(p, d)
            return f'{alt}({rel})'   # pages of results/ link their copies beside them
        return f'{alt[1:] if alt.startswith("!") else alt} (`{href}`)'.replace('[', '').replace(']', '')
    return re.sub(r'(!?\[[^\]]*\])\(([^)\s]+)\)', link, text)


def _repo_link(rel: str, tree: bool = False) -> str:
    "URL of `rel` (a path of this repository) in the repository settings.ini names (`git_url`, `branch`)."
    import api_docs
    return f"{api_docs.repo_url()}/{'tree' if tree else 'blob'}/{api_docs.settings().get('branch', 'main')}/{rel}"


def studies(reports: Path) -> dict:
    """The studies of the results pages, `{key: title}`: one per sweep file (`sweeps/<key>.yaml`) and one per folder of
    `reports/` that is not a build output (`gpu`, `bench`, ...), the GPU ones shown together."""
    out = {}
    # the page order: CPU studies, then the GPU one
    known = {'digits': 'digits', 'cifar10': 'CIFAR-10 subset', 'cifar10_cpu': 'CIFAR-10 on a CPU', 'cifar10_gpu': 'GPU'}
    found = [f.stem for f in (ROOT / 'sweeps').glob('*.yaml')]
    return {k: known.get(k, k) for k in sorted(found, key=lambda k: (list(known).index(k) if k in known else len(known), k))}


def _study_of(rel: str, keys: list) -> str:
    "The study a file of `reports/` belongs to: its folder (`gpu/`, `bench/` -> the GPU study), else the longest sweep key it starts with."
    top = rel.split('/')[0]
    if top in ('gpu', 'bench'): return 'cifar10_gpu' if 'cifar10_gpu' in keys else top
    name = rel.split('/')[-1]
    for k in sorted(keys, key=len, reverse=True):
        if re.match(rf'(\w+_)?{re.escape(k)}(_|\.|$)', name) and not (k != 'cifar10_gpu' and name.startswith('cifar10_gpu')): return k
    return ''


#: A table cell that is a number: a value, a mean ± std, a count in brackets, an interval, a percent.
_NUMBER = re.compile(r'[−+\-]?\d[\d.,]*\s*%?(\s*±\s*\d[\d.,]*)?(\s*\(\d+\))?(\s*\[[−+\-]?\d[\d.,]*,\s*[−+\-]?\d[\d.,]*\])?')


def keep_numbers(text: str) -> str:
    """Markdown `text` with each number cell of its tables held together (no-break spaces between its parts, so a narrow
    column wraps its text cells, not its numbers) and a missing value (`nan`) shown as —."""
    def row(line):
        if not line.startswith('|'): return line
        cells = line.split('|')
        for i, c in enumerate(cells[1:-1], 1):
            v = c.strip()
            if v == 'nan': cells[i] = c.replace('nan', '—')
            elif _NUMBER.fullmatch(v): cells[i] = c.replace(v, v.replace(' ', '\u00a0'))
        return '|'.join(cells)
    return '\n'.join(row(line) for line in text.split('\n'))


def _table_section(p: Path, reports: Path, out: Path, keys: list) -> list:
    """Markdown of one table of `reports/` (`.md`, else `.csv`): a heading (its title), its settings line as a note, the table,
    and where it came from (the table's file, its CSV, the sweep file and the records folder, linked in the repository)."""
    import pandas as pd
    rel = p.relative_to(reports).as_posix()
    md = p.with_suffix('.md')
    text = md.read_text(encoding='utf-8') if md.exists() else pd.read_csv(p).to_markdown(index=False)
    m = re.match(r'\s*#\s+(.+)\n', text)
    title = m.group(1).strip() if m else p.stem
    if m: text = text[m.end():]
    study = _study_of(rel, keys)
    if study and title.lower().startswith(study + ': '): title = title[len(study) + 2:]   # the page says which study
    title = title[:1].upper() + title[1:]
    settings = re.search(r'^Settings:.*$', text, re.M)
    if settings: text = text[:settings.start()] + text[settings.end():]
    lines = [f'### {title}', '']
    src = [f'table [`reports/{md.relative_to(reports).as_posix() if md.exists() else rel}`]'
           f'({_repo_link("reports/" + (md.relative_to(reports).as_posix() if md.exists() else rel))})']
    csv = p.with_suffix('.csv')
    if csv.exists():
        d = out / csv.relative_to(reports); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(csv, d)
        src.append(f'[CSV]({csv.relative_to(reports).as_posix()})')
    if study and (ROOT / 'sweeps' / f'{study}.yaml').exists():
        src.append(f'sweep [`sweeps/{study}.yaml`]({_repo_link(f"sweeps/{study}.yaml")})')
    if study and (reports / 'runs' / study).is_dir():
        src.append(f'records [`reports/runs/{study}/`]({_repo_link(f"reports/runs/{study}", tree=True)})')
    lines += ['From ' + ', '.join(src) + '.', '']
    if settings: lines += ['!!! note "Settings"', '    ' + settings.group(0)[len('Settings:'):].strip(), '']
    lines += [keep_numbers(_md_section(text, p.parent, reports, out, 1).strip()), '']
    return lines


ORDER = ('main', 'conclusions', 'selections', 'budget', 'fidelity', 'fidelity_correlation', 'teacher_strength_arch',
         'teacher_strength_epochs', 'augmentation_strength', 'data_amount', 'temperature', 'continual', 'continual_vs_real', 'rebuild')


def _table_rank(name: str, study: str) -> tuple:
    "Where a table goes on its study's page: the main table and the conclusions first, then the ablations (`ORDER`), then the rest."
    rest = name[len(study) + 1:] if name.startswith(study + '_') else name
    return (ORDER.index(rest) if rest in ORDER else len(ORDER), name)


def _figure(p: Path, reports: Path, out: Path) -> list:
    rel = p.relative_to(reports).as_posix()
    d = out / rel; d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(p, d)
    return [f'![{p.stem}]({rel}){{ .dmkd-figure }}', '']


def results_page(reports: Path, docs: Path) -> list:
    """Write the results pages (and copy their assets) from `reports/`: an overview (`results/index.md`, from
    `reports/README.md`) and one page per study (`results/<study>.md`: digits, CIFAR-10, GPU), each with its contents,
    every table with its settings line and links to the sweep and records it came from, and each figure once (SVG when
    the report wrote SVG and PNG). Returns the nav entries. Works when `reports/` is absent or empty."""
    out = docs / 'results'
    out.mkdir(parents=True, exist_ok=True)
    keys = list(studies(reports))
    files = sorted(p for p in reports.rglob('*') if p.is_file() and not any(s.startswith('.') for s in p.relative_to(reports).parts)
                   and p.relative_to(reports).parts[0] not in ('runs', 'results')) if reports.is_dir() else []
    readme = reports / 'README.md'
    lines = ['# Results', '']
    if readme.exists():
        text = re.sub(r'^\s*#\s+.*\n', '', readme.read_text(encoding='utf-8'), count=1)
        lines += [_md_section(text, reports, reports, out, 0).strip(), '']
    pages = {}
    for p in files:
        if p == readme: continue
        rel = p.relative_to(reports).as_posix()
        k = _study_of(rel, keys) or 'other'
        pages.setdefault(k, []).append(p)
    nav = [{'Overview': 'results/index.md'}]
    if not pages and not readme.exists():
        lines += ['No tables or figures yet in `reports/`. The experiment notebooks write one results record per run to',
                  '`reports/runs/` (or `reports/results/`); the report notebook turns them into the tables and figures shown here.', '']
    names = studies(reports) | {'other': 'Other'}
    if pages:
        lines += ['## Studies', ''] + [f'- [{names.get(k, k)}]({k}.md): {sum(p.suffix in (".md", ".csv") for p in v)} tables' for k, v in pages.items()] + ['']
    (out / 'index.md').write_text('\n'.join(lines), encoding='utf-8')
    for k, ps in sorted(pages.items(), key=lambda kv: list(names).index(kv[0]) if kv[0] in names else 99):
        title = names.get(k, k)
        body, toc = [], []
        stems = {}
        for p in ps: stems.setdefault(p.with_suffix('').relative_to(reports).as_posix(), []).append(p)
        figs = {}
        for stem, group in stems.items():   # one figure per figure: SVG, else PNG, else the first image
            imgs = [g for g in group if g.suffix.lower() in IMG_EXT]
            if imgs: figs[Path(stem).name] = next((g for g in imgs if g.suffix == '.svg'), next((g for g in imgs if g.suffix == '.png'), imgs[0]))
        shown = set()
        for stem, group in sorted(stems.items(), key=lambda kv: _table_rank(Path(kv[0]).name, k)):
            docs_ = [g for g in group if g.suffix in ('.md', '.csv')]
            if not docs_: continue
            p = next((g for g in docs_ if g.suffix == '.md'), docs_[0])
            if p.name == 'README.md':   # a folder's own page (reports/gpu/README.md): its text, its links kept
                text = p.read_text(encoding='utf-8')
                m = re.match(r'\s*#\s+(.+)\n', text)
                body += [f'## {m.group(1).strip() if m else p.parent.name}', '', _md_section(text[m.end():] if m else text, p.parent, reports, out, 1).strip(), '']
                toc.append(m.group(1).strip() if m else p.parent.name); continue
            sec = _table_section(p, reports, out, keys)
            toc.append(sec[0][4:]); body += sec
            # the figure of the same name (digits_budget.md -> figures/digits_budget.svg) goes under its table
            name = Path(stem).name
            if name in figs: body += _figure(figs[name], reports, out); shown.add(name)
        rest = [f for n, f in figs.items() if n not in shown]
        if rest:
            body += ['## Figures', '']
            for f in rest: body += [f'### {f.stem}', ''] + _figure(f, reports, out); toc.append(f.stem)
        others = [p for p in ps if p.suffix not in ('.md', '.csv') and p.suffix.lower() not in IMG_EXT]
        if others:
            body += ['## Other files', '']
            for p in others:
                d = out / p.relative_to(reports); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(p, d)
                body += [f'- [`reports/{p.relative_to(reports).as_posix()}`]({p.relative_to(reports).as_posix()})']
            body += ['']
        head = [f'# Results: {title}', '']
        if k in keys and (ROOT / 'sweeps' / f'{k}.yaml').exists():
            head += [f'Built by `nbs/report.ipynb` from the records of [`sweeps/{k}.yaml`]({_repo_link(f"sweeps/{k}.yaml")})'
                     + (f' under [`reports/runs/{k}/`]({_repo_link(f"reports/runs/{k}", tree=True)})' if (reports / 'runs' / k).is_dir() else '') + '.', '']
        head += ['**Contents**', ''] + [f'- [{t}](#{_slug(t)})' for t in toc] + ['']
        (out / f'{k}.md').write_text('\n'.join(head + body), encoding='utf-8')
        nav.append({title: f'results/{k}.md'})
    return nav


def _slug(title: str) -> str:
    "MkDocs' default heading id (`toc` extension's slugify)."
    from markdown.extensions.toc import slugify
    return slugify(title, '-')


# ---------------------------------------------------------------- build
def build(site_dir: Path | str | None = None, work_dir: Path | str | None = None, execute: bool = True,
          nbs: Path | str | None = None, reports: Path | str | None = None, workers: int = 1, quiet: bool = False,
          reuse: bool = True, params: dict | None = None, executed: Path | str | None = None) -> dict:
    """Build the site into `site_dir` (default `_docs/`); returns the pages, timings and the site folder. `executed`: a folder of
    experiment notebooks already executed (`<name>.ipynb`, e.g. papermill's outputs), used instead of executing them."""
    from mkdocs.commands.build import build as mk_build
    from mkdocs.config import load_config
    t_all = time.time()
    nbs = Path(nbs or ROOT / 'nbs').resolve()
    reports = Path(reports or os.environ.get('DMKD_REPORTS') or ROOT / 'reports').resolve()
    site_dir = Path(site_dir or ROOT / '_docs').resolve()
    work = Path(work_dir or ROOT / '_proc' / 'mkdocs').resolve()
    docs = work / 'docs'
    if docs.exists(): shutil.rmtree(docs)
    docs.mkdir(parents=True)
    found = notebooks(nbs)
    syms = symbol_pages(found['api'])
    if reuse and execute:
        from dmkd.core import cache_root
        cache_dir = str(cache_root() / 'docs')
    else: cache_dir = None
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    # experiment notebooks write their results records into a scratch copy of reports/ (they read the real ones)
    scratch = Path(tempfile.mkdtemp(prefix='dmkd-docs-reports-'))
    if reports.is_dir(): shutil.copytree(reports, scratch, dirs_exist_ok=True)
    env_old = os.environ.get('DMKD_REPORTS')
    os.environ['DMKD_REPORTS'] = str(scratch)
    timings, pages = {}, dict(home='index.md', api=[], tutorials=[], results='results.md')
    ctx = get_context('spawn')
    try:
        jobs = [('home', found['home'])] + [('api', f) for f in found['api']] + [('tutorials', f) for f in found['tutorials']]
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            futs = []
            for role, f in jobs:
                fut = ex.submit(_library, str(f), execute, cache_dir, str(executed) if executed else None) if role == 'api' else ex.submit(_tutorial, str(f), execute, cache_dir, str(reports), params if role == 'tutorials' else None,
                                                                                             str(executed) if executed else None)
                futs.append((role, f, fut))
            for role, f, fut in futs:
                r = fut.result()
                name = page_name(f, role)
                to_markdown(r['nb'], docs / name, syms, name, checks_last=role == 'api')
                timings[f.name] = r['seconds']
                if role != 'home': pages[role].append((r['title'] or f.stem, name))
                log(f"  {f.name:28s} -> {name:28s} {r['seconds']:7.1f}s" + ('  (executed copy reused)' if r.get('reused') else ''))
    finally:
        if env_old is None: os.environ.pop('DMKD_REPORTS', None)
        else: os.environ['DMKD_REPORTS'] = env_old
        shutil.rmtree(scratch, ignore_errors=True)
    results_nav = results_page(reports, docs)
    (docs / 'stylesheets').mkdir(exist_ok=True); shutil.copy2(Path(__file__).with_name('docs.css'), docs / 'stylesheets' / 'dmkd.css')
    nav = [{'Home': 'index.md'},
           {'API reference': [{t: n} for t, n in pages['api']]},
           {'Tutorials': [{t: n} for t, n in pages['tutorials']]},
           {'Results': results_nav}]
    nav = [n for n in nav if not (isinstance(list(n.values())[0], list) and not list(n.values())[0])]
    t0 = time.time()
    import api_docs
    cfg = load_config(str(ROOT / 'mkdocs.yml'), docs_dir=str(docs), site_dir=str(site_dir), nav=nav, site_url=api_docs.site_url())
    mk_build(cfg)
    timings['mkdocs'] = round(time.time() - t0, 1)
    timings['total'] = round(time.time() - t_all, 1)
    log(f"site: {site_dir}  ({timings['total']}s in all, mkdocs {timings['mkdocs']}s)")
    return dict(site_dir=site_dir, pages=pages, timings=timings)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--site-dir', default=None, help='static site folder (default: _docs/)')
    ap.add_argument('--work-dir', default=None, help='folder for the generated Markdown (default: _proc/mkdocs/)')
    ap.add_argument('--no-execute', action='store_true', help='do not execute the notebooks (no figures or example outputs; a quick look)')
    ap.add_argument('--reports', default=None, help='reports folder for the results page (default: $DMKD_REPORTS or reports/)')
    ap.add_argument('--workers', type=int, default=1, help='notebooks processed at once (default 1)')
    ap.add_argument('--no-reuse', action='store_true', help='execute every experiment notebook again, even a tutorial whose '
                    'outputs are committed (tools/run_tutorials.py) or one whose executed copy with the same content key '
                    '(notebook, dmkd/ source, reports/) is in the cache (data/cache/docs/)')
    ap.add_argument('--nbs', default=None, help='notebook folder (default: nbs/)')
    ap.add_argument('--executed', default=None, help='folder of experiment notebooks already executed (<name>.ipynb, e.g. papermill '
                    'outputs): used as they are instead of executing the notebooks (the test suite builds from its own runs)')
    ap.add_argument('--param', '-p', action='append', default=[], metavar='NAME=VALUE',
                    help='override a parameter of every experiment notebook that declares it (papermill -p style), e.g. '
                         '-p epochs=2 for a cheap build; the published site uses the defaults')
    a = ap.parse_args(argv)
    params = {}
    for kv in a.param:
        if '=' not in kv: ap.error(f'--param takes NAME=VALUE, got {kv!r}')
        k, v = kv.split('=', 1); params[k.strip()] = v.strip()
    res = build(a.site_dir, a.work_dir, not a.no_execute, nbs=a.nbs, reports=a.reports, workers=a.workers, reuse=not a.no_reuse,
                params=params, executed=a.executed)
    print(json.dumps(res['timings']))


if __name__ == '__main__':
    # run from the importable module, so the worker processes (spawned) find the functions they are sent
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_docs
    build_docs.main()
