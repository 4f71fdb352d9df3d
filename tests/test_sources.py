"""One contract test shared by every candidate source, plus hand-picked cases per source."""

import numpy as np
import pytest

from indexes.base import CandidateSource
from suggest.artifact import SOURCES
from suggest.types import ContextFilter

QUERIES = ["", "b", "ban", "yog", "greek yo", "bananna", "strawbery", "zzzz", "milk"]


@pytest.fixture(scope="module", params=SOURCES, ids=lambda c: c.name)
def built(request, world, artifact):
    return request.param.build(artifact.table, world)


def test_contract(built, artifact, tmp_path):
    table = artifact.table
    assert isinstance(built, CandidateSource)
    assert len(built) > 0
    dept = sorted(artifact.manifest["departments"])[0]
    phrase_mask, _ = table.masks(ContextFilter(department_id=int(dept)))
    built.save(tmp_path / built.name)
    loaded = type(built).load(tmp_path / built.name, table)
    assert len(loaded) == len(built)
    for q in QUERIES:
        for k in (1, 5, 50):
            for mask in (None, phrase_mask):
                got = built.candidates(q, k, mask, user_id=3, hour=10)
                assert got == loaded.candidates(q, k, mask, user_id=3, hour=10)  # save/load keeps behaviour
                ids = [c.phrase_id for c in got]
                assert len(ids) <= k and len(set(ids)) == len(ids)
                assert all(0.0 <= c.prior <= 1.0 for c in got)
                priors = [c.prior for c in got]
                assert priors == sorted(priors, reverse=True)
                if mask is not None:
                    assert all(mask[i] for i in ids)
                for c in got:  # highlights lie inside the phrase text
                    assert all(0 <= a < b <= len(table.texts[c.phrase_id]) for a, b in c.highlight)


def _texts(source, table, q, k=10):
    return [table.texts[c.phrase_id] for c in source.candidates(q, k)]


def test_prefix_matches_phrase_starts(artifact):
    prefix = artifact.sources[0]
    texts = _texts(prefix, artifact.table, "ban", 50)
    assert texts and all(t.startswith("ban") for t in texts)


def test_infix_finds_later_words(artifact):
    infix = next(s for s in artifact.sources if s.name == "infix")
    got = infix.candidates("yog", 50)
    assert any(artifact.table.texts[c.phrase_id].endswith("greek yogurt") for c in got)
    for c in got:  # "yog" is highlighted where the word starts, never at the phrase start
        (a, b), = c.highlight
        assert a > 0 and artifact.table.texts[c.phrase_id][a:b] == "yog"


def test_typo_finds_banana_and_respects_edit_budget(artifact):
    typo = next(s for s in artifact.sources if s.name == "typo")
    table = artifact.table
    assert "banana" in _texts(typo, table, "bananna")        # one insertion
    assert "banana" in _texts(typo, table, "bnaana")         # one transposition
    assert _texts(typo, table, "bnn") == []                  # under 4 characters: no typo matching
    assert "strawberries" in _texts(typo, table, "strwaberies", 50)  # 11 chars: two edits allowed
    assert "banana" not in _texts(typo, table, "bxnxna", 50)         # 6 chars: one edit only, this has two
    assert all(c.edits >= 1 for c in typo.candidates("bananna", 50))  # exact matches belong to the prefix source


def test_zero_prefix_personalises(artifact, world):
    zero = next(s for s in artifact.sources if s.name == "zero")
    anonymous = zero.candidates("", 10, hour=10)
    user = world.orders[0].user_id
    personal = zero.candidates("", 10, user_id=user, hour=10)
    assert [c.source for c in anonymous] == ["popular"] * 10
    assert personal[0].source == "history" and personal != anonymous
    bought = {p for o in world.orders if o.user_id == user for p in o.product_ids}
    table = artifact.table
    first = personal[0].phrase_id
    rows = table.links(first)
    assert bought & set(table.product_ids[rows].tolist())  # the top personal phrase leads to something they bought
    assert zero.candidates("ban", 10) == []
