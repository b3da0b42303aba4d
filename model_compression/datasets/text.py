"""Offline text evaluation data shipped inside gensim's test data (read as latin-1).

- Lee corpus: 50 news documents with a 50x50 human similarity matrix (upper triangle).
- Pang & Lee polarity: 200 sentences labelled ``__label__pos`` / ``__label__neg``.
- Lee background: 300 unlabelled news documents, split into sentences for distillation
  and for held-out cosine checks.
- WordSim-353: 353 word pairs with mean human relatedness scores (0-10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np


def gensim_datapath(name: str) -> Path:
    """Path of a file in gensim's test data folder (imported lazily: gensim is slow to load)."""
    from gensim.test.utils import datapath

    return Path(datapath(name))


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file missing: {path}")
    lines = [ln.strip() for ln in path.read_text(encoding="latin-1").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise ValueError(f"dataset file is empty: {path}")
    return lines


@dataclass(frozen=True)
class LeeSimilarity:
    """50 documents and their human similarity matrix (symmetric, ones on the diagonal)."""

    docs: list[str]
    human: np.ndarray


def load_lee(docs_path: Path | None = None, sims_path: Path | None = None) -> LeeSimilarity:
    docs = _read_lines(docs_path or gensim_datapath("lee.cor"))
    raw = np.loadtxt(sims_path or gensim_datapath("similarities0-1.txt"))
    if raw.shape != (len(docs), len(docs)):
        raise ValueError(f"similarity matrix shape {raw.shape} does not match {len(docs)} documents")
    upper = np.triu(raw, 1)
    return LeeSimilarity(docs=docs, human=upper + upper.T + np.eye(len(docs)))


@dataclass(frozen=True)
class Labelled:
    texts: list[str]
    labels: np.ndarray  # int64, 1 = positive


def load_polarity(path: Path | None = None) -> Labelled:
    texts, labels = [], []
    for ln in _read_lines(path or gensim_datapath("pang_lee_polarity.cor")):
        tag, _, text = ln.partition(" ")
        if tag not in ("__label__pos", "__label__neg") or not text:
            raise ValueError(f"polarity line without a __label__pos/neg tag: {ln[:60]!r}")
        texts.append(text)
        labels.append(1 if tag == "__label__pos" else 0)
    return Labelled(texts=texts, labels=np.array(labels, dtype=np.int64))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def background_sentences(path: Path | None = None, min_words: int = 5) -> list[str]:
    """Sentences of the Lee background corpus, in file order, with at least ``min_words``."""
    out: list[str] = []
    for doc in _read_lines(path or gensim_datapath("lee_background.cor")):
        out.extend(s for s in _SENTENCE_END.split(doc) if len(s.split()) >= min_words)
    return out


WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@cache
def wiki_sentences(path: Path | None = None, min_words: int = 5, max_words: int = 64) -> tuple[str, ...]:
    """Prose sentences of gensim's Wikipedia excerpt (107 articles, about 19k sentences), in
    file order: markup stripped by gensim's ``filter_wiki``; redirects, lists, tables and
    headings dropped; sentences of ``min_words`` to ``max_words`` words kept."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    out: list[str] = []
    with bz2.open(path or gensim_datapath(WIKI)) as f:
        for _, text, _ in extract_pages(f, filter_namespaces=("0",)):
            if text.lower().startswith("#redirect"):
                continue
            for para in filter_wiki(text).replace("''", "").split("\n"):
                para = para.strip()
                if para and not para.startswith(("*", "|", "!", "{", "=", "#", ":")):
                    out.extend(s for s in _SENTENCE_END.split(para) if min_words <= len(s.split()) <= max_words)
    return tuple(out)


def split_heldout(sentences: list[str], heldout: int) -> tuple[list[str], list[str]]:
    """Split off the last ``heldout`` sentences: (train, held-out). Never shuffled, so the
    held-out set is the same on every machine and never seen by distillation."""
    if not 0 < heldout < len(sentences):
        raise ValueError(f"heldout must be in (0, {len(sentences)}), got {heldout}")
    return sentences[:-heldout], sentences[-heldout:]


@dataclass(frozen=True)
class WordPairs:
    """Word pairs and their human similarity scores, in file order."""

    pairs: list[tuple[str, str]]
    human: np.ndarray


def load_wordsim(path: Path | None = None) -> WordPairs:
    """gensim's ``wordsim353.tsv``: tab-separated word, word, score; ``#`` lines are comments."""
    rows = [ln.split("\t") for ln in _read_lines(path or gensim_datapath("wordsim353.tsv")) if not ln.startswith("#")]
    bad = [r for r in rows if len(r) != 3]
    if bad:
        raise ValueError(f"wordsim353.tsv: expected 3 tab-separated fields, got {bad[0]!r}")
    return WordPairs([(a, b) for a, b, _ in rows], np.asarray([float(h) for *_, h in rows]))
