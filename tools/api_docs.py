"""How the docs site renders one public function or class (nbdev's `show_doc`, rendered for MkDocs).

nbdev's own renderer prints a signature with the parameters' comments inside a code block (cut off at the right edge on
a page) and renders classes as `def Name(`. This one renders, for every symbol `show_doc` is called on:

- a `[source]` link to the line that defines it in the repository named once in `settings.ini` (`git_url`, `branch`);
- the signature, `class Name(...)` for classes, one parameter per line when it does not fit on one;
- the docstring;
- a **parameter table** (name, type, default, one-line doc). The doc is the parameter's fastcore *docments* comment, else
  the comment of the config field of the same name (`KDConfig`, `TrainConfig`, …: the configs document every knob once,
  and the functions that take a knob as an argument mean the same thing by it), marked with the config it came from;
- for a class, its own public methods and properties, each with signature, docstring and parameter table.

`tools/build_docs.py` installs it in the kernel that executes the `show_doc` cells (`install()`); `tests/test_docs.py`
checks every public function of every API page has its table (`data-symbol` names it).
"""
from __future__ import annotations

import configparser, dataclasses, html, importlib, inspect, pkgutil, re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAXLINE = 88


@lru_cache(None)
def settings() -> dict:
    "settings.ini's `[DEFAULT]` section, interpolated (`git_url`, `branch`, `doc_host`, `doc_baseurl`, …)."
    cp = configparser.ConfigParser()
    cp.read(ROOT / 'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT'])


def repo_url() -> str:
    "The repository every source link points into: settings.ini `git_url`."
    return settings()['git_url'].rstrip('/')


def site_url() -> str:
    "Where the site is published: settings.ini `doc_host` + `doc_baseurl`."
    s = settings()
    return s['doc_host'].rstrip('/') + '/' + s.get('doc_baseurl', '').strip('/') + '/'


def source_url(obj) -> str | None:
    "`<git_url>/blob/<branch>/<file>#L<line>` of the line defining `obj`, for files of this repository; else None."
    obj = inspect.unwrap(getattr(obj, 'fget', obj))
    try:
        f = Path(inspect.getsourcefile(obj)).resolve(); line = inspect.getsourcelines(obj)[1]
    except (TypeError, OSError): return None
    try: rel = f.relative_to(ROOT).as_posix()
    except ValueError: return None
    return f"{repo_url()}/blob/{settings().get('branch', 'main')}/{rel}#L{line}"


@lru_cache(None)
def glossary() -> dict:
    """`{field: (doc, config name)}` from the docments of every dataclass of `dmkd` (its configs): the one-line doc a
    function's parameter of the same name gets when it has no comment of its own. The first config defining a name wins,
    in module order (core, data, models, train, … runs)."""
    from fastcore.docments import docments
    import dmkd
    out = {}
    mods = [m.name for m in pkgutil.iter_modules(dmkd.__path__) if not m.name.startswith('_')]
    for name in sorted(mods, key=lambda n: (MODULE_ORDER.index(n) if n in MODULE_ORDER else len(MODULE_ORDER), n)):
        m = type('M', (), dict(name=name))
        try: mod = importlib.import_module(f'dmkd.{m.name}')
        except Exception: continue
        for name in getattr(mod, '__all__', []):
            o = getattr(mod, name, None)
            if not (inspect.isclass(o) and dataclasses.is_dataclass(o)) or o.__module__ != mod.__name__: continue
            try: d = docments(o)
            except Exception: continue
            hints = {f.name: f.type for f in dataclasses.fields(o)}
            for k, v in d.items():
                if k != 'return' and v and k not in GENERIC:
                    out.setdefault(k, (' '.join(v.split()), name, _base(hints.get(k))))
    return out


# the notebooks' order: a name's doc comes from the first config that defines it, upstream first (TrainConfig.arch, not
# ContinualConfig.arch)
MODULE_ORDER = ('core', 'data', 'models', 'train', 'generators', 'ddpm', 'testing', 'synth', 'distill', 'inversion', 'datafree',
                'imagebased',
                'baselines', 'fidelity', 'records', 'runs', 'sweeps', 'tables', 'continual')
# names that mean different things in different places: never documented from a config field of the same name
GENERIC = {'model', 'name', 'cfg', 'key', 'x', 'data', 'method', 'kind', 'params', 'mode', 'value', 'out', 'source', 'spec',
           'images', 'labels', 'classes', 'path', 'folder', 'n', 'k', 'size', 'weights', 'memory', 'tasks', 'task', 'split',
           'momentum', 'seed', 'root', 'device', 'progress', 'cache', 'meta'}


def _base(anno) -> str:
    "The type of an annotation without `None` / `Optional` (to compare a parameter's type with a config field's)."
    t = _type(anno if anno is not None else inspect.Parameter.empty)
    t = re.sub(r'^Optional\[(.*)\]$', r'\1', t)
    return ' | '.join(sorted(x.strip() for x in t.split('|') if x.strip() not in ('None', 'NoneType', '')))


# The names dmkd uses in one sense across the whole library (its conventions), for parameters with no comment of their own.
COMMON = {
    'device': "where to compute: 'auto' (CUDA, else MPS, else CPU), 'cpu', 'cuda', 'cuda:1', or a `torch.device`",
    'progress': 'show a tqdm progress bar',
    'cache': 'cache root for teachers, generators and stores (None: `$DMKD_CACHE`, else `<data root>/cache`)',
    'root': 'data root (None: `$DMKD_DATA`, else `data/` in the checkout)',
    'accelerator': "an `accelerate.Accelerator` (None: one process); several processes split the work",
    'world': 'number of processes the run is spread over (part of a run key only when > 1)',
    'data_digest': "content digest of the training data (`ImageSet.digest()`): part of the cache key",
    'class_ids': 'class index of each image to make (one per image)',
    'num_classes': 'number of classes of the output layer',
    'resolution': 'image side in pixels (square images)',
    'channels': 'colour channels of the images (1 or 3)',
    'ax': 'matplotlib axes to draw into (None: a new figure)',
    'title': 'figure or panel title',
    'labels': 'class index of each image',
    'folder': 'folder on disk',
    'path': 'a path on disk',
    'meta': 'metadata dict stored alongside (provenance)',
    'seed': 'random seed',
    'df': 'pandas DataFrame of results records (one row per record)',
    'records': 'results records (dicts as written by the experiment notebooks)',
    'reports': 'reports folder (None: `$DMKD_REPORTS`, else `reports/` in the checkout)',
    'student_logits': 'logits of the student, N×K',
    'teacher_logits': 'logits of the teacher, N×K',
    'mean': 'per-channel mean the model normalises its input with',
    'std': 'per-channel standard deviation the model normalises its input with',
    'stop_after': 'stop after this many epochs (to test resuming); None: run to the end',
    'keep_epochs': 'keep per-epoch checkpoints of the last this many epochs (resume points)',
    'shard_size': 'images per shard file of a store',
    'budget': "fraction of the reference's synthesis work (1: the reference's iterations)",
}


COMMON_TYPE = {'meta': 'dict', 'labels': 'Tensor', 'df': 'DataFrame'}   # a convention that holds for this type only


def _type(a) -> str:
    if a is inspect.Parameter.empty or a is None: return ''
    s = a if isinstance(a, str) else getattr(a, '__name__', None) if isinstance(a, type) else str(a)
    return re.sub(r'\btyping\.|\b(torch\.nn\.modules\.\w+|pathlib|collections\.abc)\.', '', str(s))


def _default(d) -> str:
    if d is inspect.Parameter.empty: return ''
    s = getattr(d, '__name__', None) if callable(d) else None
    s = s or repr(d)
    return s if len(s) <= 40 else s[:37] + '…'


def _code(text: str) -> str:
    "One-line doc as HTML: escaped, `code` spans kept."
    return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(text or ''))


def params(obj) -> list[dict]:
    "Rows of `obj`'s parameter table: name, type, default, doc and where the doc comes from (`docments` or a config)."
    from fastcore.docments import docments
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return []
    try: dm = docments(obj, full=True, args_kwargs=True)     # a comment on `*args` / `**kwargs` documents them too
    except Exception: dm = {}
    rows, gl = [], glossary()
    for i, (k, p) in enumerate(sig.parameters.items()):
        if i == 0 and k in ('self', 'cls'): continue
        doc = ' '.join(((dm.get(k) or {}).get('docment') or '').split())   # a comment above a parameter may span lines
        src = 'docments' if doc else ''
        variadic = p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)     # never a config field of the same name
        if not doc and not variadic and k in gl and (p.annotation is p.empty or not gl[k][2] or _base(p.annotation) == gl[k][2]):
            doc, src = gl[k][:2]   # a config field of this name and type: the same knob
        if not doc and k in COMMON and (p.annotation is p.empty or k not in COMMON_TYPE or _base(p.annotation) == COMMON_TYPE[k]):
            doc, src = COMMON[k], 'convention'
        if not doc and p.kind == p.VAR_KEYWORD: doc = 'further keyword arguments (passed on, see the description above)'
        if not doc and p.kind == p.VAR_POSITIONAL: doc = 'further positional arguments'
        pre = '*' if p.kind == p.VAR_POSITIONAL else '**' if p.kind == p.VAR_KEYWORD else ''
        rows.append(dict(name=pre + k, type=_type(p.annotation), default=_default(p.default), doc=doc,
                         source=src if src in ('', 'docments') else src))
    return rows


def signature(obj, name: str, kind: str) -> str:
    "`def name(a, b=1)` / `class Name(...)`, one parameter per line when that does not fit in `MAXLINE` characters."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f'{kind} {name}'
    ps = [str(p) for i, p in enumerate(sig.parameters.values()) if not (i == 0 and p.name in ('self', 'cls'))]
    ret = '' if sig.return_annotation is inspect.Signature.empty or kind == 'class' else f' -> {_type(sig.return_annotation)}'
    one = f"{kind} {name}({', '.join(ps)}){ret}"
    if len(one) <= MAXLINE: return one
    return f"{kind} {name}(\n" + ''.join(f'    {p},\n' for p in ps) + f"){ret}"


_FROM = {'convention': "the library's convention for this name (tools/api_docs.py COMMON)"}


def param_table(obj, name: str) -> str:
    "The parameter table (HTML) of `obj`, named `name` in its `data-symbol`; a one-line note when it takes no parameter."
    rows = params(obj)
    sym = html.escape(name, quote=True)
    if not rows: return f'<p class="dmkd-params dmkd-noparams" data-symbol="{sym}">Takes no parameters.</p>'
    body = ''.join(
        f'<tr><td><code>{html.escape(r["name"])}</code></td><td><code>{html.escape(r["type"])}</code></td>'
        f'<td><code>{html.escape(r["default"])}</code></td><td>{_code(r["doc"])}'
        + (f' <span class="dmkd-from" title="{_FROM.get(r["source"], "documented by the config field of this name")}">'
           f'({html.escape(r["source"])})</span>' if r['source'] not in ('', 'docments') else '') + '</td></tr>' for r in rows)
    return (f'<table class="dmkd-params" data-symbol="{sym}"><thead><tr><th>Parameter</th><th>Type</th><th>Default</th>'
            f'<th>Description</th></tr></thead><tbody>{body}</tbody></table>')


def _link(url: str | None) -> str:
    return f'[source]({url}){{target="_blank" style="float:right; font-size:smaller"}}\n\n' if url else ''


def _doc(obj) -> str:
    d = inspect.cleandoc(obj.__doc__ or '')   # its own docstring: not one inherited (nn.Module.forward's)
    if inspect.isclass(obj) and d.startswith(obj.__name__ + '('): return ''   # dataclass' generated signature
    return f'*{d.strip()}*\n\n' if d and '\n' not in d.strip() else (d.strip() + '\n\n' if d else '')


def members(cls) -> list:
    "The public methods and properties `cls` defines itself (not the inherited ones), in definition order."
    out = []
    for k, v in vars(cls).items():
        if k.startswith('_'): continue
        if isinstance(v, (staticmethod, classmethod)): v = v.__func__
        if inspect.isfunction(v) or isinstance(v, property): out.append((k, v))
    return out


def render(obj, name: str | None = None, title_level: int = 3) -> str:
    "The Markdown of one symbol's entry: source link, heading, signature, doc, parameter table (and methods for a class)."
    name = name or getattr(obj, '__qualname__', None) or getattr(obj, '__name__', str(obj))
    h = '#' * title_level
    if not callable(obj):
        return f'---\n\n{h} {name}\n\n```python\n{name}: {type(obj).__name__}\n```\n\n{_doc(obj)}'
    kind = 'class' if inspect.isclass(obj) else 'async def' if inspect.iscoroutinefunction(obj) else 'def'
    md = f'---\n\n{_link(source_url(obj))}{h} {name}\n\n```python\n{signature(obj, name, kind)}\n```\n\n{_doc(obj)}'
    md += param_table(obj, name) + '\n\n'
    if kind == 'class':
        for k, m in members(obj):
            q = f'{name}.{k}'
            if isinstance(m, property):
                md += f'{_link(source_url(m))}{h}# {q}\n\n*property* {_doc(m.fget)}'
            else:
                kd = 'async def' if inspect.iscoroutinefunction(m) else 'def'
                md += f'{_link(source_url(m))}{h}# {q}\n\n```python\n{signature(m, k, kd)}\n```\n\n{_doc(m)}{param_table(m, q)}\n\n'
    return md


class DocRenderer:
    "What `show_doc` returns on the docs site: an object whose Markdown is `render(sym)` (as nbdev's renderers)."
    def __init__(self, sym, name: str | None = None, title_level: int = 3):
        self.sym, self.name, self.title_level = sym, name, title_level

    def _repr_markdown_(self): return render(self.sym, self.name, self.title_level)
    def __repr__(self): return render(self.sym, self.name, self.title_level)


def install():
    "Make nbdev's `show_doc` render with `DocRenderer` in this process (the docs build's `show_doc` kernel)."
    import nbdev.showdoc
    nbdev.showdoc.BasicMarkdownRenderer = DocRenderer
