import pytest

from suggest.errors import InvalidQuery
from suggest.pipeline import PRODUCTS_PER_SUGGESTION, Merged, Pipeline
from tests.bad_inputs import BAD_QUERIES


@pytest.mark.parametrize("kwargs, field, message", BAD_QUERIES)
def test_bad_queries_are_rejected_naming_the_field(pipeline, kwargs, field, message):
    with pytest.raises(InvalidQuery, match=message) as err:
        pipeline.make_query(**kwargs)
    assert err.value.field == field


def _run(pipeline, text, **kw):
    return pipeline.suggest(pipeline.make_query(text, **kw))


def test_results_are_ranked_distinct_and_at_most_k(pipeline):
    for text in ["", "b", "ban", "greek", "zzzzzz"]:
        for k in (1, 7, 50):
            got = _run(pipeline, text, k=k, hour=9)
            assert len(got) <= k
            assert len({s.text for s in got}) == len(got)
            assert [s.score for s in got] == sorted((s.score for s in got), reverse=True)
            assert all(1 <= len(s.product_ids) <= PRODUCTS_PER_SUGGESTION for s in got)


def test_highlight_marks_what_was_typed(pipeline):
    for s in _run(pipeline, "Ban", k=20):
        if "typo" not in s.sources:
            assert all(s.text[a:b] == "ban" for a, b in s.highlight)


def test_department_filter_applies_to_phrases_and_their_products(pipeline, world):
    dept = next(k for k, v in world.catalog.departments.items() if v == "frozen")
    got = _run(pipeline, "b", k=20, department="frozen")
    assert got
    assert all(world.catalog.get(p).department_id == dept for s in got for p in s.product_ids)
    assert _run(pipeline, "b", k=20, department=str(dept)) == got  # by id or by name


def test_store_filter_never_leads_to_out_of_stock_products(pipeline, world):
    out = world.out_of_stock["store-3"]
    for text in ["", "b", "milk", "chips", "yog"]:
        for s in _run(pipeline, text, k=30, store="store-3"):
            assert not out & set(s.product_ids)


def test_exact_outranks_typo_of_equal_weight(pipeline):
    # "banan" matches "banana" exactly and, with one edit, other phrases: the exact one comes first.
    got = _run(pipeline, "banan", k=10)
    assert got[0].text.startswith("banan") and "prefix" in got[0].sources


def test_merge_keeps_every_source_of_a_phrase(pipeline):
    merged = {}
    for source in pipeline.sources:
        for c in source.candidates("milk", 50):
            merged.setdefault(c.phrase_id, set()).add(c.source)
    multi = [p for p, s in merged.items() if len(s) > 1]
    got = {s.text: s.sources for s in _run(pipeline, "milk", k=50)}
    for p in multi:
        text = pipeline.table.texts[p]
        if text in got:
            assert set(got[text]) == merged[p]


def test_scorer_seam_replaces_the_prior(artifact):
    def reverse_alpha(query, table, merged: list[Merged]):
        import numpy as np
        order = sorted(range(len(merged)), key=lambda i: table.texts[merged[i].phrase_id], reverse=True)
        scores = np.zeros(len(merged), np.float32)
        scores[order] = np.linspace(1, 0, len(merged))
        return scores

    p = Pipeline.from_artifact(artifact, scorer=reverse_alpha)
    texts = [s.text for s in p.suggest(p.make_query("b", k=10))]
    assert texts == sorted(texts, reverse=True)


def test_personal_empty_box(pipeline, world):
    user = world.orders[0].user_id
    mine = _run(pipeline, "", k=10, user_id=user, hour=10)
    anyone = _run(pipeline, "", k=10, hour=10)
    unknown = _run(pipeline, "", k=10, user_id=10**9, hour=10)
    assert mine[0].sources == ("history",) and mine != anyone
    assert unknown == anyone  # an unknown user gets what everyone gets


def test_cache_gives_the_same_answers_and_skips_personal_requests(artifact, pipeline, world):
    cached = Pipeline.from_artifact(artifact, cache_size=100)
    user = world.orders[0].user_id
    for _ in range(2):
        for text in ["", "b", "ban", "Ban ", "milk"]:
            for kw in ({}, {"department": "frozen"}, {"hour": 20}):
                assert _run(cached, text, k=7, **kw) == _run(pipeline, text, k=7, **kw)
            assert _run(cached, text, user_id=user, hour=9) == _run(pipeline, text, user_id=user, hour=9)
    info = cached.cache_info()
    assert info.hits > 0 and info.currsize <= 100
