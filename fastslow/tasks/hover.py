"""HoVer-style claim verification with retrieval: the model writes search queries for a claim; a BM25 index
over a local corpus retrieves the top-k documents per query; reward 1 iff every gold (supporting) document was
retrieved. Feedback names the documents found and missed, as in the paper.

Files (any format `fastslow.tasks.loading` reads, or a Hugging Face dataset):
    corpus: one document per row, {"id" (optional), "title", "text"}; documents are keyed by id, else title.
    claims: one claim per row, {"uid" (optional), "claim", "supporting_facts"}; the gold field lists document
        ids or titles, or HoVer's [title, sentence_index] pairs (the title is used).
"""

from __future__ import annotations

import json
import re

import numpy as np

from fastslow.errors import FastSlowError
from fastslow.tasks.answers import extract_answer, strip_thinking
from fastslow.tasks.base import Problem, Verdict
from fastslow.tasks.loading import content_id, load_problems, load_records, row_text

SEED_PROMPT = (
    "You help fact-check a claim by searching a Wikipedia-like corpus. The claim may need several articles "
    "(multi-hop): name the people, places and works it mentions. Write at most {max_queries} search queries, "
    "one per line, each starting with 'Query:'."
)
_QUERY_LINE = re.compile(r"^\s*(?:[-*]\s*|\d+[.)]\s*)?(?:search\s+)?query\s*\d*\s*[:：]\s*(.+?)\s*$", re.IGNORECASE)


def tokenize(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class BM25Index:
    """BM25 (rank_bm25's Okapi) over title + text; `search` returns document keys, best first."""

    def __init__(self, keys: list[str], texts: list[str]):
        from rank_bm25 import BM25Okapi

        self.keys = keys
        self.bm25 = BM25Okapi([tokenize(t) or ["<empty>"] for t in texts])

    def search(self, query: str, k: int) -> list[str]:
        tokens = tokenize(query)
        if not tokens:
            return []
        scores = self.bm25.get_scores(tokens)
        best = np.argsort(-scores, kind="stable")[:k]
        return [self.keys[i] for i in best if scores[i] > 0]  # no shared term: not retrieved


def parse_queries(completion: str, max_queries: int) -> list[str]:
    """The 'Query: ...' lines of a completion (thinking removed), else its final answer as one query."""
    text = strip_thinking(completion)
    queries = [m.group(1) for line in text.splitlines() if (m := _QUERY_LINE.match(line))]
    if not queries and extract_answer(text):
        queries = [extract_answer(text)]
    return queries[:max_queries]


class HoverTask:
    """Multi-hop retrieval for claim verification (HoVer); reward 1 iff all gold documents are retrieved.

    Args (config `task.args`):
        path: the claims (file or dataset name); corpus: the documents (file or dataset name).
        claim_field, gold_field, id_field: claim columns; rows without `id_field` get an id hashed from the claim.
        k: documents retrieved per query; max_queries: queries read from one completion.
        partial_credit: reward = fraction of gold documents found, instead of all-or-nothing.
        hf_config, hf_split, val_fraction, test_fraction, split_seed: as in `fastslow.tasks.loading`.
    """

    name = "hover"

    def __init__(
        self,
        path: str,
        corpus: str,
        claim_field: str = "claim",
        gold_field: str = "supporting_facts",
        id_field: str = "uid",
        k: int = 5,
        max_queries: int = 3,
        partial_credit: bool = False,
        hf_config: str | None = None,
        hf_split: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
    ):
        if k < 1 or max_queries < 1:
            raise FastSlowError("task.args: k and max_queries must be at least 1")
        self.k, self.max_queries, self.partial_credit = k, max_queries, partial_credit
        self.seed_prompt = SEED_PROMPT.format(max_queries=max_queries)
        docs = load_records(
            corpus, _parse_document, "documents with 'text' and 'title' (or 'id') fields",
            key=lambda d: d[0], field="task.args.corpus",
        )
        keys, titles, texts = zip(*(d for d, _ in docs))
        self.titles = dict(zip(keys, titles))
        by_title = {title: key for key, title in self.titles.items()}
        self.index = BM25Index(list(keys), [f"{title} {text}" for title, text in zip(titles, texts)])

        def to_problem(row: dict) -> Problem:
            claim = row_text(row, claim_field).strip()
            gold = []
            for entry in _gold_entries(row[gold_field]):
                key = entry if entry in self.titles else by_title.get(entry)
                if key is None:
                    raise ValueError(f"gold document {entry!r} is not in the corpus")
                if key not in gold:
                    gold.append(key)
            if not gold:
                raise ValueError(f"no gold documents in {gold_field!r}")
            pid = str(row[id_field]) if row.get(id_field) is not None else content_id(claim, prefix="hover-")
            answer = json.dumps([self.titles[g] for g in gold])
            return Problem(id=pid, prompt=f"Claim: {claim}", answer=answer, info={"gold": gold})

        self.data = load_problems(
            path, to_problem, f"claims with {claim_field!r} and {gold_field!r} fields",
            hf_config=hf_config, hf_split=hf_split, val_fraction=val_fraction, test_fraction=test_fraction,
            split_seed=split_seed,
        )

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return self.data.problems(split, n, seed)

    def retrieve(self, queries: list[str]) -> list[str]:
        """Union of the top-k documents of each query, in retrieval order."""
        found: list[str] = []
        for query in queries:
            found += [key for key in self.index.search(query, self.k) if key not in found]
        return found

    def score(self, problem: Problem, completion: str) -> Verdict:
        queries = parse_queries(completion, self.max_queries)
        gold = problem.info["gold"]
        if not queries:
            titles = ", ".join(_quote(self.titles[g]) for g in gold)
            return Verdict(0.0, f"No search query was given. The claim needs these documents: {titles}.")
        retrieved = self.retrieve(queries)
        hits = [g for g in gold if g in retrieved]
        misses = [g for g in gold if g not in retrieved]
        reward = len(hits) / len(gold) if self.partial_credit else float(not misses)
        lines = [
            f"Retrieved {len(hits)} of {len(gold)} gold documents with {len(queries)} "
            f"quer{'y' if len(queries) == 1 else 'ies'}: " + " | ".join(queries) + ".",
            "Found: " + (", ".join(_quote(self.titles[g]) for g in hits) or "none") + ".",
        ]
        if misses:
            lines.append("Missed: " + ", ".join(_quote(self.titles[g]) for g in misses) + ".")
        shown = [_quote(self.titles[r]) for r in retrieved[:10]]
        lines.append("Retrieved: " + (", ".join(shown) or "nothing") + ".")
        return Verdict(reward, "\n".join(lines))


def _parse_document(row: dict) -> tuple[str, str, str]:
    text = row.get("text")
    if isinstance(text, list):  # HoVer's wiki dump stores abstracts as lists of sentences
        text = " ".join(str(s) for s in text)
    text = str(text or "").strip()
    title = str(row.get("title") or "").strip()
    key = str(row["id"]).strip() if row.get("id") is not None else title
    if not key or not text:
        raise ValueError("a document needs 'text' and a 'title' or 'id'")
    return key, title or key, text


def _gold_entries(value) -> list[str]:
    if isinstance(value, str):
        try:
            decoded = json.loads(value)  # a CSV cell may hold a JSON list
        except json.JSONDecodeError:
            decoded = None
        value = decoded if isinstance(decoded, list) else [value]
    if not isinstance(value, list):
        raise ValueError("gold documents must be a list")
    return [str(v[0] if isinstance(v, (list, tuple)) and v else v).strip() for v in value]


def _quote(title: str) -> str:
    return f'"{title}"'
