"""Ranking knowledge-base articles for a ticket: model, fault code, category, text, feedback."""

from __future__ import annotations

import pytest

from vigil.knowledge.ranking import Candidate, Query, feedback_term, rank, text_similarity

QUERY = Query(text="ventilator E042 expiratory valve leak alarm, pressure drops",
              model="ventilator", fault_codes=frozenset({"E042"}), category="mechanical")


def article(article_id: int, text: str, **kw: object) -> Candidate:
    return Candidate(article_id=article_id, text=text, **kw)  # type: ignore[arg-type]


def test_text_similarity_prefers_shared_words() -> None:
    close, far = text_similarity("expiratory valve leak",
                                 ["leak at the expiratory valve seal", "battery will not charge"])
    assert close > 0.3 and far == 0.0
    assert text_similarity("the and", ["of the"]) == [0.0]
    assert text_similarity("x", []) == []


def test_each_match_raises_the_rank() -> None:
    bare = article(1, "valve leak")
    by_model = article(2, "valve leak", models=frozenset({"ventilator"}))
    by_code = article(3, "valve leak", models=frozenset({"ventilator"}),
                      fault_codes=frozenset({"E042"}))
    by_all = article(4, "valve leak", models=frozenset({"ventilator"}),
                     fault_codes=frozenset({"E042"}), categories=frozenset({"mechanical"}))
    ranked = rank(QUERY, [bare, by_model, by_code, by_all])
    assert [r.article_id for r in ranked] == [4, 3, 2, 1]
    assert ranked[0].reasons["fault_code"] == 0.5 and ranked[-1].reasons["model"] == 0.0


def test_feedback_moves_an_article_past_an_equal_one() -> None:
    assert feedback_term(0, 0) == 0
    assert feedback_term(3, 0) == pytest.approx(0.3)  # 4/5 - 1/2
    assert feedback_term(0, 3) == pytest.approx(-0.3)
    same = {"models": frozenset({"ventilator"}), "fault_codes": frozenset({"E042"})}
    liked = article(2, "valve leak", helpful=3, **same)
    disliked = article(1, "valve leak", not_helpful=3, **same)
    assert [r.article_id for r in rank(QUERY, [disliked, liked])] == [2, 1]
    # Without feedback the tie goes to the older article.
    plain = [article(2, "valve leak", **same), article(1, "valve leak", **same)]
    assert [r.article_id for r in rank(QUERY, plain)] == [1, 2]


def test_limit() -> None:
    many = [article(i, f"note {i}") for i in range(10)]
    assert len(rank(QUERY, many, limit=3)) == 3
