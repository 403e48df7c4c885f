"""The docs site in a real browser: build it with `python tools/build_docs.py`, serve it over HTTP, open every page in
headless Chromium (Debian's `chromium`, driven by Playwright; no browser is ever downloaded) and check that

- every notebook of `nbs/` has its page, plus the results page, all reachable from the navigation;
- every page loads without console errors, page errors or failed requests;
- every internal link resolves (pages, files and `#anchors`);
- every image loads, and every experiment notebook that draws has its figures on its page;
- every library page documents each public function and class of its module (a `show_doc` heading);
- the search box finds `get_model` and links to the models page.

The site is built from the experiment notebooks this test run has already executed with papermill
(`tests/test_notebooks.py`, tiny parameters), so no notebook is executed twice: `build_docs.py --executed`.
Screenshots of the home page, one tutorial and one API page go to `tests/artifacts/` (git-ignored).
Set `DMKD_DOCS_SITE=<folder>` to check an already built site instead of building one (and `DMKD_DOCS_NBS=<folder>`
when it was built from notebooks other than `nbs/`; `DMKD_DOCS_ARGS` adds arguments to the build).
"""
import ast, functools, http.server, os, re, shlex, shutil, subprocess, sys, threading, time
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from conftest import once_per_run

ROOT = Path(__file__).resolve().parents[1]
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


def _build(tmp: Path):
    from test_notebooks import EXPERIMENTS, executed
    runs = {executed(f.stem).parent for f in EXPERIMENTS} if NBS == ROOT / 'nbs' else set()   # the run's papermill outputs
    t0 = time.time()
    extra = shlex.split(os.environ.get('DMKD_DOCS_ARGS', ''))  # e.g. "--nbs DIR -p epochs=2" for a scratch run
    extra += ['--executed', str(runs.pop()), '--workers', '2'] if runs else []
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


def _visit(ctx, url):
    "Open `url`; return (page, problems) with console errors, page errors, failed and 4xx/5xx requests."
    page = ctx.new_page(); problems = []
    page.on('console', lambda m: problems.append(f'console {m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
    page.on('requestfailed', lambda r: problems.append(f'request failed: {r.url} ({r.failure})') if r.url.startswith('http://127.') else None)
    page.on('response', lambda r: problems.append(f'HTTP {r.status}: {r.url}') if r.status >= 400 else None)
    resp = page.goto(url, wait_until='load')
    page.wait_for_load_state('networkidle')
    page.status = resp.status if resp else None
    return page, problems


def test_site(browser, server):
    "Crawl the site from the home page and check pages, links, images, figures, API docs and console errors."
    from playwright.sync_api import Error as PWError
    ART.mkdir(parents=True, exist_ok=True)
    exp = expected_pages()
    seen, todo, errors, links, anchors, imgs, status = set(), ['/'], [], {}, {}, {}, {}
    nav = set()
    while todo:
        path = todo.pop(0)
        if path in seen: continue
        seen.add(path)
        page, problems = _visit(browser, server + path)
        status[path] = page.status
        if page.status != 200: page.close(); continue  # reported below as a broken link, with the pages linking to it
        errors += [f'{path}: {p}' for p in problems]
        info = page.evaluate('''() => ({
            links: [...document.querySelectorAll('a[href]')].map(a => a.href),
            nav: [...document.querySelectorAll('nav.md-nav--primary a[href]')].map(a => a.href),
            ids: [...document.querySelectorAll('[id]')].map(e => e.id),
            imgs: [...document.querySelectorAll('article img')].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
            title: document.title})''')
        anchors[path] = set(info['ids'])
        imgs[path] = info['imgs']
        errors += [f'{path}: image did not load: {i["src"]}' for i in info['imgs'] if not i['ok']]
        nav |= {urlparse(h).path for h in info['nav'] if h.startswith(server)}
        for h in info['links']:
            if not h.startswith(server): continue
            u, frag = urldefrag(h)
            p = urlparse(u).path
            links.setdefault((p, frag), set()).add(path)
            if p.endswith('/') or p.endswith('.html'):
                if p not in seen: todo.append(p)
        page.close()
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
        elif nb != 'index.ipynb' and draws_unconditionally(f) and not any(i['ok'] for i in imgs[path]):
            errors.append(f'{path}: {nb} draws figures but its page shows none')
    # screenshots: home, one tutorial, one API page
    for name, path in [('home', '/'), ('tutorial_distill', exp.get('distill.ipynb')), ('api_models', exp.get('02_models.ipynb'))]:
        if path and path in anchors:
            page, _ = _visit(browser, server + path)
            page.screenshot(path=str(ART / f'docs_{name}.png'), full_page=name != 'api_models')
            page.close()
    assert not errors, f'{len(errors)} problems in the docs site ({len(seen)} pages crawled):\n' + '\n'.join(errors[:60])
    assert len(seen) >= len(exp)


def test_config_pages_document_every_field(site):
    """The API page of `run` and of each config shows every field (parameter) with its one-line documentation, read from
    the comments in the code (fastcore `docments`), so the docs cannot drift from the configs."""
    import html
    from fastcore.docments import docments
    from dmkd.distill import KDConfig
    from dmkd.generators import DDPMConfig
    from dmkd.runs import BaselineSource, RealSource, RunSpec, StoreSource, run
    from dmkd.train import TrainConfig
    pages = dict(runs=[RunSpec, StoreSource, RealSource, BaselineSource, run], distill=[KDConfig], train=[TrainConfig], generators=[DDPMConfig])
    missing = []
    for page, objs in pages.items():
        text = re.sub(r'\s+', ' ', html.unescape(re.sub(r'<[^>]+>', '', (site / 'api' / page / 'index.html').read_text())))
        for o in objs:
            docs = {k: d for k, d in docments(o).items() if k != 'return'}
            assert docs and all(docs.values()), f"{o.__name__} has a field without a comment: {[k for k, d in docs.items() if not d]}"
            missing += [f"api/{page}: {o.__name__}.{k} ({d!r})" for k, d in docs.items() if re.sub(r'\s+', ' ', d) not in text]
    assert not missing, 'fields whose one-line doc is not on their page:\n' + '\n'.join(missing)


def test_search_finds_get_model(browser, server):
    "Material's search (a web worker over the built index) finds `get_model` and links to the models page."
    page, problems = _visit(browser, server + '/')
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
