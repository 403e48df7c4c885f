"""The docs site in a real browser: build it with `python tools/build_docs.py`, serve it over HTTP, open every page in
headless Chromium (Debian's `chromium`, driven by Playwright; no browser is ever downloaded) and check that

- every notebook of `nbs/` has its page, plus the results page, all reachable from the navigation;
- every page loads without console errors, page errors or failed requests;
- every internal link resolves (pages, files and `#anchors`);
- every image loads, and every experiment notebook that draws has its figures on its page;
- every library page documents each public function and class of its module (a `show_doc` heading) with a parameter
  table (name, type, default, one-line doc: `tools/api_docs.py`);
- no page shows a figure twice (the same figure as PNG and SVG, or the same image bytes twice);
- every link that leaves the site points into the repository settings.ini names (`git_url`) or at the site's own
  published address (no placeholder, no other repository), besides the theme's credit link;
- the results pages have one page per study with its contents, and each table its settings line and its sweep;
- the search box finds `get_model` and links to the models page.

The checks are plain functions (`page_problems`), and `test_checks_catch_bad_pages` shows each failing on a page made to
break it, so the crawl cannot pass by checking nothing.

The site is built from the experiment notebooks this test run has already executed with papermill
(`tests/test_notebooks.py`, tiny parameters), so no notebook is executed twice: `build_docs.py --executed`.
Screenshots go to `tests/artifacts/` (git-ignored): the home page, a tutorial, API pages (`run`'s parameter
table; the model zoo's example output), the results page of the digits study.
Set `DMKD_DOCS_SITE=<folder>` to check an already built site instead of building one (and `DMKD_DOCS_NBS=<folder>`
when it was built from notebooks other than `nbs/`; `DMKD_DOCS_ARGS` adds arguments to the build).
"""
import ast, functools, http.server, os, re, shlex, shutil, subprocess, sys, threading, time
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from conftest import once_per_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import api_docs  # noqa: E402  (settings.ini's repository and site address, as the build uses them)

THEME_LINKS = ('https://squidfunk.github.io/mkdocs-material/',)   # the theme's "Made with Material" credit
NBS = Path(os.environ.get('DMKD_DOCS_NBS', ROOT / 'nbs'))
ART = ROOT / 'tests' / 'artifacts'
CHROMIUM = os.environ.get('DMKD_CHROMIUM', shutil.which('chromium') or '/usr/bin/chromium')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
DRAWS = re.compile(r'plt\.|show_images\(|show_store\(|\.plot\(|sns\.')


def _need_browser():
    ok = Path(CHROMIUM).exists()
    try: import playwright  # noqa: F401
    except ImportError: ok = False
    if not ok:
        msg = f"headless Chromium ({CHROMIUM}) and playwright are needed: apt-get install chromium; pip install -e '.[dev]'"
        if os.environ.get('DMKD_REQUIRE_BROWSER'): pytest.fail(msg)
        pytest.skip(msg)


def expected_pages() -> dict:
    "URL path of every page the site must have, from `nbs/` (not from the builder): name -> path."
    out = {'index.ipynb': '/', 'results': '/results/'}
    for f in sorted(NBS.glob('*.ipynb')):
        if f.name.startswith(('_', '.')) or f.name == 'index.ipynb': continue
        lib = re.search(r'^#\|\s*default_exp\s', _nb_code(f), re.M)
        out[f.name] = ('/api/' if lib else '/tutorials/') + re.sub(r'^\d+[a-z]?_', '', f.stem) + '/'
    return out


def _nb_code(f: Path) -> str:
    import json
    return '\n'.join(''.join(c['source']) for c in json.loads(f.read_text())['cells'] if c['cell_type'] == 'code')


def draws_unconditionally(f: Path) -> bool:
    "Does notebook `f` make a figure in a top-level statement (not under `if`/`for`/`def`), so its page must show one?"
    import json
    for c in json.loads(f.read_text())['cells']:
        if c['cell_type'] != 'code': continue
        src = '\n'.join(l for l in ''.join(c['source']).splitlines() if not l.lstrip().startswith(('%', '!', '#|')))
        try: body = ast.parse(src).body
        except SyntaxError: continue
        if any(isinstance(n, (ast.Expr, ast.Assign)) and DRAWS.search(ast.unparse(n)) for n in body): return True
    return False


def _public_defs(f: Path) -> list:
    "Top-level functions and classes of `__all__` in `dmkd/<module>.py` (what `show_doc` documents)."
    nb_src = _nb_code(f)
    m = re.search(r'^#\|\s*default_exp\s+(\S+)', nb_src, re.M)
    if not m: return []
    mod = ROOT / 'dmkd' / (m.group(1).replace('.', '/') + '.py')
    tree = ast.parse(mod.read_text())
    names = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == '__all__' for t in n.targets):
            names = set(ast.literal_eval(n.value))
    return sorted(n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names)


def page_problems(path: str, info: dict, defs: list, server: str, repo: str, site: str, digests: dict | None = None) -> list:
    """What is wrong with one crawled page. `info`: what the browser read from it (`links`, `imgs` with `src`, `tables`:
    the `data-symbol` of every parameter table); `defs`: the public functions and classes its module must document;
    `repo`/`site`: settings.ini's repository and published address; `digests`: image URL -> content hash."""
    out = []
    tables = set(info.get('tables', []))
    out += [f'{path}: {d} has no parameter table' for d in defs if d not in tables]
    stems = {}
    for i in info.get('imgs', []):
        u = urlparse(i['src']).path
        stems.setdefault(Path(u).stem, set()).add(u)
    out += [f'{path}: figure {k!r} shown {len(v)} times ({", ".join(sorted(Path(x).name for x in v))})' for k, v in stems.items() if len(v) > 1]
    if digests:
        same = {}
        for i in info.get('imgs', []):
            if i['src'] in digests: same.setdefault(digests[i['src']], set()).add(urlparse(i['src']).path)
        out += [f'{path}: the same figure shown {len(v)} times ({", ".join(sorted(Path(x).name for x in v))})' for v in same.values() if len(v) > 1
                and len({Path(x).stem for x in v}) > 1]
    if info.get('history'):     # pages speak to users: no internal issue, stop or milestone numbers
        out.append(f"{path}: names the project's internal history: {', '.join(sorted(set(info['history'])))}")
    for h in info.get('links', []):
        if not h.startswith(('http://', 'https://')) or h.startswith(server): continue
        if h.startswith(repo + '/') or h == repo or h.startswith(site) or h.startswith(THEME_LINKS): continue
        out.append(f'{path}: link outside the configured repository ({repo}) and site ({site}): {h}')
    return out


def _build(tmp: Path):
    from test_notebooks import EXPERIMENTS, LIBRARY, executed, executed_library
    # the run's papermill outputs and its executed library notebooks: nothing is executed twice
    runs = {executed(f.stem).parent for f in EXPERIMENTS} | {executed_library(f).parent for f in LIBRARY} if NBS == ROOT / 'nbs' else set()
    t0 = time.time()
    extra = shlex.split(os.environ.get('DMKD_DOCS_ARGS', ''))  # e.g. "--nbs DIR -p epochs=2" for a scratch run
    extra += ['--executed', str(runs.pop()), '--workers', '2'] if runs else []
    extra += ['--reports', str(ROOT / 'reports')] if '--reports' not in extra else []   # the committed results, whatever $DMKD_REPORTS says
    p = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--site-dir', str(tmp / 'site'), '--work-dir', str(tmp / 'work')] + extra,
                       cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, f"docs build failed:\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    print(f"docs built in {time.time() - t0:.0f}s\n{p.stdout[-3000:]}")


@pytest.fixture(scope='module')
def site():
    "The built site folder: built once per test run, whichever worker asks first (unless $DMKD_DOCS_SITE names one)."
    _need_browser()
    if os.environ.get('DMKD_DOCS_SITE'): return Path(os.environ['DMKD_DOCS_SITE'])
    return once_per_run('docs', _build) / 'site'


@pytest.fixture(scope='module')
def server(site):
    "The site over HTTP on 127.0.0.1 (search runs in a web worker, which file:// does not allow)."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    th = threading.Thread(target=httpd.serve_forever, daemon=True); th.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()


@pytest.fixture(scope='module')
def browser(server, tmp_path_factory):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp('chromium-profile')), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport=dict(width=1280, height=900))
        yield ctx
        ctx.close()


def _visit_all(ctx, urls, index: bool = False):
    """Open `urls` side by side in tabs of their own; return [(page, problems)] once each has loaded and its network has
    been idle for 0.5 s, with its console errors, page errors, failed and 4xx/5xx requests. The tabs load and idle
    together (the crawl took 54 s one page at a time on a loaded 2-core machine, 38 s so and with the empty index)."""
    out = []
    for url in urls:
        page = ctx.new_page(); problems = []
        page.on('console', lambda m, pr=problems: pr.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
        page.on('pageerror', lambda e, pr=problems: pr.append(f'page error: {e}'))
        page.on('requestfailed', lambda r, pr=problems: pr.append(f'request failed: {r.url} ({r.failure})')
                if r.url.startswith('http://127.') else None)
        page.on('response', lambda r, pr=problems: pr.append(f'HTTP {r.status}: {r.url}') if r.status >= 400 else None)
        # the search index (0.9 MB, indexed anew by every page's search worker) is served empty unless `index`:
        # indexing it was a third of the crawl; `test_search_finds_get_model` searches the real one
        if not index: page.route('**/search/search_index.json', lambda r: r.fulfill(json={**r.fetch().json(), 'docs': []}))
        resp = page.goto(url, wait_until='commit')
        page.status = resp.status if resp else None
        out.append((page, problems))
    for page, _ in out:
        page.wait_for_load_state('load')
        page.wait_for_load_state('networkidle')
    return out


def _visit(ctx, url, index: bool = False):
    "Open `url`; return (page, problems) as `_visit_all` does."
    return _visit_all(ctx, [url], index)[0]


#: Pages the crawl opens at once.
TABS = 8


#: JS: the tables of the page's article wider than its column that do not scroll inside a box of their own (at a 1280-px
#: window): a table's numbers past the right edge of the page are numbers nobody reads.
WIDE_TABLES = """(() => { const col = document.querySelector('article') || document.body, w = col.clientWidth, bad = [];
  const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX) && e.clientWidth <= w + 1;
  for (const t of col.querySelectorAll('table')) {
    if (t.getBoundingClientRect().width <= w + 1 || scrolls(t)) continue;
    let b = t.parentElement, ok = false;
    while (b && b !== col.parentElement) { if (scrolls(b)) { ok = true; break; } b = b.parentElement; }
    if (!ok) bad.push(t.innerText.slice(0, 60)); }
  return bad; })()"""


def test_site(browser, server):
    "Crawl the site from the home page and check pages, links, images, figures, API docs and console errors."
    from playwright.sync_api import Error as PWError
    ART.mkdir(parents=True, exist_ok=True)
    exp = expected_pages()
    repo, site_url = api_docs.repo_url(), api_docs.site_url()
    seen, todo, errors, links, anchors, imgs, status, infos = set(), ['/'], [], {}, {}, {}, {}, {}
    nav = set()
    def _read_page(path, page, problems):
        status[path] = page.status
        if page.status != 200: page.close(); return  # reported below as a broken link, with the pages linking to it
        errors.extend(f'{path}: {p}' for p in problems)
        info = page.evaluate('''() => ({
            links: [...document.querySelectorAll('a[href]')].map(a => a.href),
            nav: [...document.querySelectorAll('nav.md-nav--primary a[href]')].map(a => a.href),
            ids: [...document.querySelectorAll('[id]')].map(e => e.id),
            imgs: [...document.querySelectorAll('article img')].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
            tables: [...document.querySelectorAll('.dmkd-params[data-symbol]')].map(t => t.dataset.symbol),
            wide: WIDE_TABLES(),
            nan: [...document.querySelectorAll('article td')].filter(td => td.innerText.trim() === 'nan').length,
            history: ((document.querySelector('article') || document.body).innerText
                      .match(/\\b(issues? #?\\d+|stop \\d+|milestones?)\\b/gi) || []),
            title: document.title})'''.replace('WIDE_TABLES()', WIDE_TABLES))
        anchors[path] = set(info['ids'])
        infos[path] = info
        imgs[path] = info['imgs']
        errors.extend([f'{path}: image did not load: {i["src"]}' for i in info['imgs'] if not i['ok']])
        errors.extend([f'{path}: a table wider than its column that does not scroll in its own box: {t!r}' for t in info['wide']])
        if info['nan']: errors.append(f"{path}: {info['nan']} table cells print nan (a missing value reads —)")
        nav.update(urlparse(h).path for h in info['nav'] if h.startswith(server))
        for h in info['links']:
            if not h.startswith(server): continue
            u, frag = urldefrag(h)
            p = urlparse(u).path
            links.setdefault((p, frag), set()).add(path)
            if p.endswith('/') or p.endswith('.html'):
                if p not in seen: todo.append(p)
        page.close()

    while todo:
        batch = list(dict.fromkeys(p for p in todo if p not in seen))[:TABS]
        todo = [p for p in todo if p not in seen and p not in batch]
        seen |= set(batch)
        for path, (page, problems) in zip(batch, _visit_all(browser, [server + p for p in batch])):
            _read_page(path, page, problems)
    # every internal link resolves: pages were crawled above; files (downloads, assets) are fetched; anchors exist
    for (p, frag), sources in sorted(links.items()):
        src = ', '.join(sorted(sources)[:3])
        if p in status and status[p] != 200: errors.append(f'broken link {p} -> HTTP {status[p]} (linked from {src})')
        elif p in anchors:
            if frag and frag not in anchors[p]: errors.append(f'broken anchor {p}#{frag} (linked from {src})')
        else:
            try: st = browser.request.get(server + p).status
            except PWError as e: st = str(e)
            if st != 200: errors.append(f'broken link {p} -> {st} (linked from {src})')
    # every notebook has its page, reachable from the navigation
    if status.get('/') != 200: errors.append(f"home page: HTTP {status.get('/')}")
    for nb, path in exp.items():
        if path not in anchors: errors.append(f'page missing: {path} (for {nb}): not linked from the site')
        elif path != '/' and path not in nav: errors.append(f'page {path} (for {nb}) is not in the navigation')
    # experiment notebooks that draw show their figures; library pages document every public def
    for nb, path in exp.items():
        f = NBS / nb
        if not f.exists() or path not in anchors: continue
        defs = _public_defs(f)
        if defs:
            missing = [d for d in defs if d not in anchors[path] and d.lower() not in anchors[path]]
            if missing: errors.append(f'{path}: no show_doc entry for {missing}')
            errors += page_problems(path, dict(tables=infos[path]['tables']), defs, server, repo, site_url)
        elif nb != 'index.ipynb' and draws_unconditionally(f) and not any(i['ok'] for i in imgs[path]):
            errors.append(f'{path}: {nb} draws figures but its page shows none')
    # every page: each figure once (by name, and by content), links only into the configured repository and site
    digests = {}
    for path, info in infos.items():
        for i in info['imgs']:
            if i['src'] not in digests and i['src'].startswith(server):
                import hashlib
                digests[i['src']] = hashlib.sha256(browser.request.get(i['src']).body()).hexdigest()
        errors += page_problems(path, dict(imgs=info['imgs'], links=info['links'], history=info['history']), [], server,
                                repo, site_url, digests)
    # the results: one page per study with its contents; each table says its settings and its sweep
    studies = [p for p in anchors if p.startswith('/results/') and p != '/results/']
    if not studies: errors.append('no results page per study under /results/')
    for path, (page, _) in zip(studies, _visit_all(browser, [server + p for p in studies])):
        t = page.evaluate('''() => ({contents: [...document.querySelectorAll('article h3')].length,
            settings: document.querySelectorAll('article .admonition.note').length,
            sweeps: [...document.querySelectorAll('article a[href*="/sweeps/"]')].length})''')
        page.close()
        if path in ('/results/digits/', '/results/cifar10/') and not (t['contents'] and t['settings'] and t['sweeps']):
            errors.append(f'{path}: tables without settings line or sweep link ({t})')
    # screenshots: home, one tutorial, an API page (a parameter table and an example's output), a results page
    shots = [('home', '/', None), ('tutorial_distill', exp.get('distill.ipynb'), None), ('api_models', exp.get('02_models.ipynb'), '#the-zoo-at-a-glance'),
             ('api_runs_run', exp.get('09_runs.ipynb'), '#run'), ('results_digits', '/results/digits/', None),
             ('results_digits_main', '/results/digits/', '#student-accuracy-chosen-on-validation-scored-once-on-test')]
    shots = [(name, path + (anchor or '')) for name, path, anchor in shots if path and path in anchors]
    for (name, url), (page, _) in zip(shots, _visit_all(browser, [server + u for _, u in shots])):
        if '#' in url: page.wait_for_timeout(300)       # the scroll to the anchor
        page.screenshot(path=str(ART / f'docs_{name}.png'), full_page=name in ('home', 'tutorial_distill'))
        page.close()
    assert not errors, f'{len(errors)} problems in the docs site ({len(seen)} pages crawled):\n' + '\n'.join(errors[:60])
    assert len(seen) >= len(exp)


def test_checks_catch_bad_pages():
    """Each check of the crawl fails on a page made to break it, then passes on the fixed page: a public function without
    its parameter table, a figure shown twice (PNG and SVG of one figure; the same image under two names), a link to a
    repository other than settings.ini's, text naming an internal issue number."""
    server, repo, site = 'http://127.0.0.1:8000', api_docs.repo_url(), api_docs.site_url()
    good = dict(tables=['get_model', 'Classifier'], links=[server + '/api/models/', f'{repo}/blob/main/dmkd/models.py#L204', site + 'api/',
                                                            THEME_LINKS[0]],
                imgs=[dict(src=server + '/results/figures/digits_budget.svg'), dict(src=server + '/tutorials/distill_files/distill_5_0.png')])
    digests = {good['imgs'][0]['src']: 'a', good['imgs'][1]['src']: 'b'}
    assert page_problems('/api/models/', good, ['get_model', 'Classifier'], server, repo, site, digests) == []
    no_table = dict(good, tables=['Classifier'])
    assert page_problems('/api/models/', no_table, ['get_model', 'Classifier'], server, repo, site) == ['/api/models/: get_model has no parameter table']
    twice = dict(good, imgs=good['imgs'] + [dict(src=server + '/results/figures/digits_budget.png')])
    (p,) = page_problems('/results/digits/', twice, [], server, repo, site, digests)
    assert "figure 'digits_budget' shown 2 times (digits_budget.png, digits_budget.svg)" in p
    copy = dict(good, imgs=good['imgs'] + [dict(src=server + '/tutorials/distill_files/distill_9_0.png')])
    (p,) = page_problems('/tutorials/distill/', copy, [], server, repo, site, digests | {copy['imgs'][-1]['src']: 'b'})
    assert 'the same figure shown 2 times (distill_5_0.png, distill_9_0.png)' in p
    for bad in ('https://github.com/fastai/nbdev/blob/main/nbdev/showdoc.py', 'https://github.com/placeholder/dmkd', 'https://example.org/dmkd'):
        (p,) = page_problems('/api/models/', dict(good, links=good['links'] + [bad]), [], server, repo, site)
        assert p.endswith(bad) and 'outside the configured repository' in p
    (p,) = page_problems('/results/gpu/', dict(good, history=['issue 25', 'issue 25']), [], server, repo, site, digests)
    assert p == "/results/gpu/: names the project's internal history: issue 25"
    # the repository is settings.ini's: the build and this test read the same `git_url`
    import configparser
    cp = configparser.ConfigParser(); cp.read(ROOT / 'settings.ini')
    assert repo == cp['DEFAULT']['git_url'].rstrip('/') and repo.startswith('https://github.com/')


def test_api_renderer_tables():
    """The API renderer (tools/api_docs.py) on real dmkd symbols: `run`'s and `synthesize`'s tables have a row per parameter, each doc
    from its comment or its config field; classes render as `class`, with their own methods; source links carry the
    defining line in settings.ini's repository."""
    import inspect
    from dmkd.models import BasicBlock, get_model
    from dmkd.runs import run
    from dmkd.synth import synthesize
    for f in (run, synthesize):
        rows = api_docs.params(f)
        assert [r['name'] for r in rows] == list(inspect.signature(f).parameters)
        assert sum(bool(r['doc']) for r in rows) >= 0.8 * len(rows), [r['name'] for r in rows if not r['doc']]
    md = api_docs.render(BasicBlock)
    assert '```python\nclass BasicBlock(cin, cout, stride=1)\n```' in md and '#### BasicBlock.forward' in md
    line = inspect.getsourcelines(get_model)[1]
    assert api_docs.source_url(get_model) == f"{api_docs.repo_url()}/blob/main/dmkd/models.py#L{line}"
    t = api_docs.param_table(get_model, 'get_model')
    assert t.count('<tr>') == len(inspect.signature(get_model).parameters) + 1 and 'architecture key of the zoo' in t


def test_public_parameters_have_a_doc():
    """At least 95 % of the public parameters of the API pages (every name in a module's `__all__`, its public methods
    included) have a one-line doc, as the pages show it: a comment on the parameter (fastcore `docments`), the field of the
    config of that name, or a stated convention. The undocumented ones are listed."""
    import importlib, inspect
    total, missing = 0, []
    for m in api_docs.MODULE_ORDER:
        mod = importlib.import_module(f'dmkd.{m}')
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj): continue
            objs = [(name, obj)]
            if inspect.isclass(obj): objs += [(f'{name}.{k}', v) for k, v in api_docs.members(obj) if not isinstance(v, property)]
            for n, o in objs:
                rows = api_docs.params(o)
                total += len(rows)
                missing += [f"dmkd.{m}.{n}: {r['name']}" for r in rows if not r['doc']]
    assert total > 1000, total                     # the count reached the whole API
    share = 1 - len(missing) / total
    assert share >= 0.95, f"{share:.1%} of {total} public parameters have a doc; without one:\n" + '\n'.join(missing)


def test_config_pages_document_every_field(site):
    """The API page of `run` and of each config shows every field (parameter) with its one-line documentation, read from
    the comments in the code (fastcore `docments`), so the docs cannot drift from the configs."""
    import html
    from fastcore.docments import docments
    from dmkd.distill import KDConfig
    from dmkd.ddpm import DDPMConfig
    from dmkd.runs import BaselineSource, RealSource, RunSpec, run
    from dmkd.synth import StoreSpec
    from dmkd.train import TrainConfig
    pages = dict(synth=[StoreSpec], runs=[RunSpec, RealSource, BaselineSource, run], distill=[KDConfig], train=[TrainConfig], ddpm=[DDPMConfig])
    missing = []
    for page, objs in pages.items():
        text = re.sub(r'\s+', ' ', html.unescape(re.sub(r'<[^>]+>', '', (site / 'api' / page / 'index.html').read_text())))
        for o in objs:
            docs = {k: d for k, d in docments(o).items() if k != 'return'}
            assert docs and all(docs.values()), f"{o.__name__} has a field without a comment: {[k for k, d in docs.items() if not d]}"
            # the table shows `code` spans as code: compare without the backticks
            missing += [f"api/{page}: {o.__name__}.{k} ({d!r})" for k, d in docs.items() if re.sub(r'\s+', ' ', d).replace('`', '') not in text]
    assert not missing, 'fields whose one-line doc is not on their page:\n' + '\n'.join(missing)


def test_search_finds_get_model(browser, server):
    "Material's search (a web worker over the built index) finds `get_model` and links to the models page."
    page, problems = _visit(browser, server + '/', index=True)
    box = page.locator('input.md-search__input')
    if not box.is_visible(): page.click('label.md-header__button[for="__search"]')
    box.click()
    box.press_sequentially('get_model', delay=30)  # typed key by key, as Material listens to key events
    page.wait_for_selector('.md-search-result__item', timeout=20000)
    hits = page.evaluate('''() => [...document.querySelectorAll('.md-search-result__item a')].map(a => [a.href, a.innerText])''')
    page.screenshot(path=str(ART / 'docs_search.png'))
    assert not problems, problems
    assert any('/api/models/' in h and 'get_model' in t for h, t in hits), hits[:10]


@pytest.mark.slow
def test_published_build_executes_the_notebooks(tmp_path):
    """The build the site is published with (`python tools/build_docs.py`, as `.github/workflows/docs.yml` runs it) executes
    every experiment notebook itself, in-process, at its defaults; every tutorial that draws shows its figures."""
    from test_notebooks import EXPERIMENTS
    p = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--site-dir', str(tmp_path / 'site'), '--work-dir', str(tmp_path / 'work'),
                        '--workers', '2', '--no-reuse'], cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert p.returncode == 0, f"docs build failed:\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    print(p.stdout[-2500:])
    for f in EXPERIMENTS:
        md = (tmp_path / 'work' / 'docs' / 'tutorials' / (f.stem + '.md')).read_text()
        assert 'executed copy reused' not in p.stdout
        if draws_unconditionally(f): assert '![figure](' in md, f"{f.name}: its page shows no figure"


def test_table_numbers_do_not_wrap_and_missing_values_read_a_dash():
    "The results pages' tables: a number cell's parts are held together, text cells are left to wrap, nan reads —."
    sys.path.insert(0, str(ROOT / 'tools'))
    from build_docs import keep_numbers
    t = '| method | acc | interval | note |\n|---|---|---|---|\n| DM-KD | 94.99 ± 6.02 (3) | +7.85 [−7.49, +23.20] | not levelled off |\n| DFQ | nan | 87.1 % | — |'
    rows = keep_numbers(t).split('\n')
    assert rows[2] == '| DM-KD | 94.99\u00a0±\u00a06.02\u00a0(3) | +7.85\u00a0[−7.49,\u00a0+23.20] | not levelled off |', rows[2]
    assert rows[3] == '| DFQ | — | 87.1\u00a0% | — |' and rows[:2] == t.split('\n')[:2]


def test_api_pages_show_usage_and_put_checks_under_tests(site):
    """An API page's examples read as usage: the checks of each example (fastcore `test_*` calls, `assert`) go to a
    "Tests" section at the end of the page (`nbdev_test` still runs them in place); a line that also does something
    stays in its example, and so do checks inside a block (a `with` or `for` they need). Across the API pages, 635 lines
    of checks moved, and 5 % of the code lines left above them are checks (24 % before, by the same count)."""
    from build_docs import split_checks
    keep, moved = split_checks("x = f(1)\n# its shape\ntest_eq(x.shape, (2,))\ny = g(x); test_eq(y, 1)\nx")
    assert (keep, moved) == ("x = f(1)\ny = g(x); test_eq(y, 1)\nx", "# its shape\ntest_eq(x.shape, (2,))")
    for page in ('core', 'runs', 'synth'):
        text = (site / 'api' / page / 'index.html').read_text()
        assert 'id="tests"' in text, page
        examples, tests = text.split('id="tests"', 1)
        assert tests.count('test_eq') >= 5, page           # the checks are there, after the examples
