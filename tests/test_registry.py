"""The methods' registry (`dmkd.baselines.METHODS`): every entry builds its images, cites its reference and documents
each parameter, and adding a method is one entry and its builder. A toy method registered here shows up in the main
table, the budget table and the docs page with no other edit; no code tests a method's name."""
import pandas as pd
import pytest
import torch

from conftest import shared_cache, tiny_teacher
from dmkd.baselines import (KINDS, METHODS, Context, ImageSet, Method, method_page, method_params, methods_table,
                            deviations_table, param_doc, reference_table, register, teacher_labels)
from dmkd.data import load_dataset
from dmkd.distill import KDConfig
from dmkd.tables import budget_table, main_table

#: Cheap parameters per method, so that every builder really runs (one image per class, a step or two of work).
TINY = dict(deepinversion=dict(n_per_class=1, budget=0.0005, batch_size=10),
            dda=dict(n_per_class=1, budget=0.0005, n_aug=1, num_steps=2, ddpm_steps=20),
            d4m=dict(n_per_class=1, prototypes=1, num_steps=2, ddpm_steps=20),
            one_image=dict(n_per_class=1))
BUILT = [m for m, e in METHODS.items() if e.builder]


@pytest.fixture(scope='module')
def ctx():
    net, meta = tiny_teacher()
    test = load_dataset('digits', 'test')
    return Context(teacher=net.eval(), tmeta=meta, test=test, dataset='digits', root=None, cache=shared_cache(),
                   device='cpu', kd_device=torch.device('cpu'), seed=0, progress=False,
                   kd=KDConfig(student='resnet8', epochs=1, batch_size=16))


@pytest.mark.parametrize('method', BUILT)
def test_every_entry_builds(ctx, method):
    e = METHODS[method]
    params = TINY.get(method, dict(epoch_per_class=1, ngf=8) if e.kind == 'hook' else {})
    if e.kind == 'hook' and 'budget' in e.params and e.params['budget'] is None: params['budget'] = None
    out = e.build(ctx, params)
    images, hook = out['images'], out['hook']
    assert isinstance(images, ImageSet) and images.images.dtype == torch.uint8
    assert images.images.shape[1:] == ctx.shape and len(images) >= len(ctx.classes)
    assert (hook is None) == (e.kind == 'bank'), (method, e.kind)      # a hook method makes its images during KD
    if hook is not None:
        x = hook(images.images[:8].clone(), 0, ctx.teacher, ctx.teacher)
        assert x.shape == (8, *ctx.shape)


@pytest.mark.parametrize('method', list(METHODS))
def test_every_entry_cites_and_documents(method):
    e = METHODS[method]
    assert e.kind in KINDS and e.label and e.synthesis
    assert all(param_doc(method, k) for k in e.params), [k for k in e.params if not param_doc(method, k)]
    if e.budget_knob:     # a method with a budget follows a cited reference, its defaults equal to the cited values
        assert e.reference is not None and 'budget' in e.params
        for row in reference_table(method)[:len(e.reference.values)]: assert row['dmkd'] == row['reference'], row
        assert all(':' in w or '(' in w for _, w in e.reference.values.values())   # file:line, or why there is none
    if e.kind == 'hook':  # the recipe facts that differ between references are recorded and cited
        assert e.generator_batch and e.student_mode in ('train', 'eval')
        assert e.reference.facts['generator_batch'][0] == e.generator_batch
        assert e.reference.facts['student_mode'][0] == e.student_mode
    if e.uses_real and e.kind != 'reference': assert e.real_images, method
    cited = reference_table(method) if e.reference else []
    for row in cited + deviations_table(method):     # a table cell is one line of text
        assert all('\n' not in str(v) for v in row.values()), row


def _toy(ctx, n_per_class: int = 5, shade: int = 128):
    x = torch.full((n_per_class * len(ctx.classes), *ctx.shape), shade, dtype=torch.uint8)
    return dict(images=ImageSet(x, teacher_labels(ctx.teacher, x), ctx.classes, 'toy', 'synthetic'), hook=None, info={})


@pytest.fixture
def toy():
    entry = register(Method('toy', 'Toy (grey images)', 'bank', 'one grey shade', family='image-based', builder=_toy,
                            param_docs=dict(shade='the grey level of every image')))
    yield entry
    METHODS.pop('toy')


def _records(methods):
    return pd.DataFrame([dict(method=m, source='baseline', teacher='resnet8', student='resnet8', seed=s,
                              teacher_key=f't{s}', teacher_acc=95.0, teacher_val_acc=96.0, student_acc=50.0 + s,
                              student_val_acc=51.0 + s, synthesis_seconds=2.0, kd_seconds=1.0,
                              synthesis_budget=dict(budget=1.0, teacher_backward=0, teacher_forward=10))
                         for m in methods for s in range(3)])


def test_a_new_method_is_one_entry(ctx, toy):
    """Registering a method is the only edit: it builds, its parameters have their docs, and it has its row in the main
    table (with its label and synthesis cell, after the registered methods) and its section in the docs."""
    assert method_params('toy') == dict(n_per_class=5, shade=128)
    out = toy.build(ctx, dict(n_per_class=2))
    assert len(out['images']) == 2 * len(ctx.classes) and (out['images'].images == 128).all()
    mt = main_table(_records(['dfq', 'toy']))
    assert list(mt.method) == ['teacher (real data)', 'DFQ', 'Toy (grey images)']
    assert mt.set_index('method').loc['Toy (grey images)', 'synthesis'] == 'one grey shade'
    assert mt.set_index('method').loc['Toy (grey images)', 'resnet8→resnet8 test, final'] == '51.00 ± 1.00 (3)'
    assert list(budget_table(_records(['toy', 'dfq'])).method) == ['DFQ', 'Toy (grey images)']   # the registry's order
    assert methods_table()[-1]['label'] == 'Toy (grey images)'
    page = method_page('toy')
    assert '### Toy (grey images) (`toy`)' in page and 'the grey level of every image' in page


def test_registry_refuses_a_second_entry_and_a_missing_builder():
    with pytest.raises(ValueError, match='registered already'):
        register(Method('dfq', 'again', 'hook', '?', builder=_toy))
    with pytest.raises(ValueError, match='needs one'): Method('toy', 'Toy', 'bank', 'toy images')
    with pytest.raises(KeyError, match='Valid methods: deepinversion, dafl'): method_params('magic')
