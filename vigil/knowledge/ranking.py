"""Which knowledge-base articles fit a ticket best: a pure ranking, no database.

An article scores for the device model, the fault code and the category it
shares with the ticket, and for how close its text is to the ticket's
description and evidence (TF-IDF cosine similarity, scikit-learn). Engineers'
verdicts move it up or down: the feedback term is the smoothed share of
"helpful" votes (a new article starts neutral at 1/2), centred on zero, so
three helpful votes out of three add about as much as a matching category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import linear_kernel


@dataclass(frozen=True, slots=True)
class Weights:
    model: float = 0.3
    fault_code: float = 0.5
    category: float = 0.15
    text: float = 0.6
    feedback: float = 0.5


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True, slots=True)
class Query:
    """What a ticket offers to match on."""

    text: str
    model: str | None = None
    fault_codes: frozenset[str] = frozenset()
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    article_id: int
    text: str
    models: frozenset[str] = frozenset()
    fault_codes: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    helpful: int = 0
    not_helpful: int = 0


@dataclass(frozen=True, slots=True)
class Ranked:
    article_id: int
    score: float
    # What made the score, for the engineer to see why it was suggested.
    reasons: dict[str, float]


def feedback_term(helpful: int, not_helpful: int) -> float:
    """Smoothed helpful share minus one half: 0 with no votes, towards +-0.5 with many."""
    return (helpful + 1) / (helpful + not_helpful + 2) - 0.5


def text_similarity(query: str, documents: Sequence[str]) -> list[float]:
    """Cosine similarity of the query to each document over TF-IDF vectors fitted on them."""
    if not documents:
        return []
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True,
                                 token_pattern=r"(?u)\b\w[\w.-]*\b")
    try:
        matrix = vectorizer.fit_transform([query, *documents])
    except ValueError:  # nothing but stop words anywhere
        return [0.0] * len(documents)
    return [float(x) for x in linear_kernel(matrix[0:1], matrix[1:]).ravel()]


def rank(query: Query, candidates: Sequence[Candidate], *, weights: Weights = DEFAULT_WEIGHTS,
         limit: int = 5) -> list[Ranked]:
    """The best ``limit`` candidates, best first; ties go to the lower (older) article id."""
    similarity = text_similarity(query.text, [c.text for c in candidates])
    ranked = []
    for candidate, text in zip(candidates, similarity, strict=True):
        reasons = {
            "model": weights.model if query.model and query.model in candidate.models else 0.0,
            "fault_code": weights.fault_code if query.fault_codes & candidate.fault_codes
            else 0.0,
            "category": weights.category
            if query.category and query.category in candidate.categories else 0.0,
            "text": round(weights.text * text, 6),
            "feedback": round(weights.feedback
                              * feedback_term(candidate.helpful, candidate.not_helpful), 6),
        }
        ranked.append(Ranked(candidate.article_id, round(sum(reasons.values()), 6), reasons))
    ranked.sort(key=lambda r: (-r.score, r.article_id))
    return ranked[:limit]
