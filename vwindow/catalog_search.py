"""Colloquial search over the service catalog (智能搜索): "开个超市要办啥" → standard items.

The query is normalised (full width to half width, lower case, no punctuation), cut by a
jieba tokenizer that knows the catalog's own vocabulary (item names, aliases, keywords,
departments, materials, synonym phrases, stop words), and stripped of stop words ("我想",
"要", "怎么办"). Colloquial phrases found anywhere in the query add their standard terms
from the synonym table. Items are scored with BM25 over four kinds of term, each with its
own document frequencies:

- words of the item's name, aliases, keywords and department, weighted by field;
- words of its materials and situation questions, weighted low (almost every item wants
  an ID card, which must not make "身份证" worthless when it is in a name);
- character pairs and single characters of the name, aliases, keywords and department,
  which catch words nobody put in the vocabulary ("砍几棵树" still shares 树 with 砍树).

A query that is exactly an item's name, alias or keyword lifts that item.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol, cast

from pydantic import BaseModel, ConfigDict

from vwindow.catalog import CatalogItem

# Words that say nothing about which item is wanted ("我想问下这个要怎么办啊").
STOP_WORDS = frozenset("""
我 我想 我要 我们 我家 俺 咱 你好 您好 请问 问下 问一下 一下 下 想 要 需要 得 应该 该 可以 能 能不能
可不可以 会 去 到 来 给 帮 帮忙 把 在 在哪 在哪里 在哪儿 哪里 哪儿 哪 哪个 哪些 什么 啥 啥子 么 咋
咋办 怎么 怎么办 怎么弄 怎样 怎么样 如何 么样 办 办理 弄 搞 整 做 办个 弄个 搞个 个 了 的 着 过
呢 吗 吧 啊 呀 哦 嘛 哈 是 有 有没有 没有 还 都 也 就 又 再 那个 这个 一个 这 那 手续 流程 材料
时候 什么时候 多少 多久 谁 找 部门 窗口 政府 现在 今年 已经 还是 或者 和 跟 与 及
""".split())

_FIELD_WEIGHTS = MappingProxyType({"name": 3.0, "alias": 2.0, "keyword": 1.5, "department": 0.5})
# Query-side weight of each kind of match; words found by a synonym count a little less
# than the citizen's own words, and character matches are only a fallback.
_WORD = 1.0
_SYNONYM = 0.8
_DETAIL = 0.25
_PAIR = 0.35
_CHAR = 0.15
_EXACT_BOOST = 1.5
_K1 = 1.2
_B = 0.5
_VOCABULARY_FREQ = 1000
"""jieba frequency of every catalog word: equal weights make its route the fewest pieces."""
_NON_WORD = re.compile(r"[\W_]+")


class Segmenter(Protocol):
    """What ``CatalogSearch`` uses of a ``jieba.Tokenizer``."""

    def cut(self, sentence: str, cut_all: bool = False, HMM: bool = True) -> Iterator[str]: ...

    def add_word(self, word: str, freq: int | None = None, tag: str | None = None) -> None: ...


def jieba_tokenizer(*, general_dictionary: bool = False) -> Segmenter:
    """A fresh ``jieba.Tokenizer``, by default with an empty dictionary.

    ``CatalogSearch`` adds the catalog's own vocabulary, which is all its scoring can match
    anyway; that builds in milliseconds, where jieba's 350,000-word general dictionary
    takes about 1.7 s to load here (``general_dictionary=True``; the benchmark
    ``python -m tests.bench.catalog_search --general`` compares the two).
    """
    with warnings.catch_warnings():
        # jieba 0.42 imports pkg_resources (deprecated by newer setuptools) and has invalid
        # escapes in string literals, which warn whenever its bytecode is compiled.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", UserWarning)
        import jieba  # type: ignore[import-untyped]
    tokenizer = jieba.Tokenizer()
    if general_dictionary:
        # jieba hangs its own stderr handler on its logger at DEBUG: keep start-up quiet.
        logging.getLogger("jieba").setLevel(logging.WARNING)
        tokenizer.initialize()
    else:
        # Marked as loaded so that add_word does not pull in the general dictionary.
        tokenizer.initialized = True
    return cast(Segmenter, tokenizer)


def normalize(text: str) -> str:
    """Full width to half width, lower case, punctuation and spaces removed."""
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).lower())


class SearchHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    score: float
    matched_terms: tuple[str, ...]
    """Query words (or, failing those, characters) the item matched, strongest first."""


class _Channel:
    """BM25 postings of one kind of term; each (term, item) contribution precomputed."""

    def __init__(self, docs: Sequence[Mapping[str, float]], weight: float) -> None:
        self.weight = weight
        n = len(docs)
        lengths = [sum(doc.values()) for doc in docs]
        average = (sum(lengths) / n) if n else 0.0
        df: dict[str, int] = {}
        for doc in docs:
            for term in doc:
                df[term] = df.get(term, 0) + 1
        postings: dict[str, list[tuple[int, float]]] = {}
        for index, doc in enumerate(docs):
            norm = _K1 * (1 - _B + _B * lengths[index] / (average or 1.0))
            for term, tf in doc.items():
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                postings.setdefault(term, []).append(
                    (index, weight * idf * tf * (_K1 + 1) / (tf + norm)))
        self.postings = {term: tuple(hits) for term, hits in postings.items()}


class CatalogSearch:
    """Colloquial search over catalog items: build once, then query from anywhere.

    ``synonyms`` maps colloquial phrases to standard terms (``default_synonyms()``).
    ``tokenizer`` defaults to ``jieba_tokenizer()``; one passed in gets the catalog
    vocabulary added to it. Searching does not change the object.
    """

    def __init__(self, items: Sequence[CatalogItem], synonyms: Mapping[str, Sequence[str]],
                 *, tokenizer: Segmenter | None = None) -> None:
        self._items = tuple(items)
        self._synonyms: dict[str, tuple[str, ...]] = {}
        for phrase, terms in synonyms.items():
            if normalize(phrase):
                self._synonyms[normalize(phrase)] = tuple(normalize(t) for t in terms)
        self._synonym_sizes = sorted({len(k) for k in self._synonyms}, reverse=True)
        self._vocabulary = self._collect_vocabulary()
        self._longest_word = max((len(w) for w in self._vocabulary), default=1)
        self._tokenizer = tokenizer if tokenizer is not None else jieba_tokenizer()
        for word in sorted(self._vocabulary):
            self._tokenizer.add_word(word, _VOCABULARY_FREQ)
        self._exact: dict[str, list[int]] = {}
        words: list[dict[str, float]] = []
        details: list[dict[str, float]] = []
        pairs: list[dict[str, float]] = []
        chars: list[dict[str, float]] = []
        for index, item in enumerate(self._items):
            for phrase in {normalize(p) for p in (item.name, *item.aliases, *item.keywords)}:
                self._exact.setdefault(phrase, []).append(index)
            item_words: dict[str, float] = {}
            item_details: dict[str, float] = {}
            item_pairs: dict[str, float] = {}
            item_chars: dict[str, float] = {}
            for field, text in _primary_fields(item):
                weight = _FIELD_WEIGHTS[field]
                runs = self._content_runs(normalize(text))
                _add(item_words, self._words(runs), weight)
                _add(item_pairs, _pairs(runs), weight)
                _add(item_chars, _chars(runs), weight)
            for text in _detail_fields(item):
                _add(item_details, self._words(self._content_runs(normalize(text))), 1.0)
            words.append(item_words)
            details.append(item_details)
            pairs.append(item_pairs)
            chars.append(item_chars)
        self._channels = {"word": _Channel(words, _WORD), "detail": _Channel(details, _DETAIL),
                          "pair": _Channel(pairs, _PAIR), "char": _Channel(chars, _CHAR)}

    @property
    def items(self) -> tuple[CatalogItem, ...]:
        return self._items

    def _collect_vocabulary(self) -> frozenset[str]:
        vocabulary: set[str] = set(STOP_WORDS)
        for item in self._items:
            department = normalize(item.department)
            vocabulary.update((normalize(item.name), department, department.removeprefix("县")))
            vocabulary.update(normalize(t) for t in (*item.aliases, *item.keywords))
            vocabulary.update(normalize(m.name) for m in item.required_materials)
        vocabulary.update(self._synonyms)
        for terms in self._synonyms.values():
            vocabulary.update(terms)
        return frozenset(w for w in vocabulary if len(w) > 1)

    def _content_runs(self, text: str) -> list[list[str]]:
        """The segmented text as runs of adjacent tokens that are not stop words."""
        runs: list[list[str]] = [[]]
        for token in self._tokenizer.cut(text, HMM=False):
            if token in STOP_WORDS:
                if runs[-1]:
                    runs.append([])
            else:
                runs[-1].append(token)
        return [run for run in runs if run]

    def _words(self, runs: Iterable[Sequence[str]]) -> list[str]:
        """Every token plus the catalog words inside it ("养老保险待遇" → 养老保险, 待遇, …)."""
        out: list[str] = []
        for run in runs:
            for token in run:
                out.append(token)
                for size in range(min(len(token) - 1, self._longest_word), 1, -1):
                    for start in range(len(token) - size + 1):
                        if token[start:start + size] in self._vocabulary:
                            out.append(token[start:start + size])
        return out

    def _expansions(self, text: str) -> list[str]:
        """Standard terms of the colloquial phrases in ``text``.

        A phrase inside a longer one found at the same place is skipped: "生孩子" means
        生育, and its "孩子" must not add 儿童 as well.
        """
        spans: list[tuple[int, int]] = []
        for start in range(len(text)):
            for size in self._synonym_sizes:
                if text[start:start + size] in self._synonyms:
                    spans.append((start, start + size))
        out: list[str] = []
        for start, end in spans:
            if any(s <= start and end <= e and (s, e) != (start, end) for s, e in spans):
                continue
            out.extend(self._synonyms[text[start:end]])
        return out

    def search(self, query: str, limit: int = 5) -> list[SearchHit]:
        """The best ``limit`` items for ``query``, best first; none when nothing matches."""
        text = normalize(query)
        runs = self._content_runs(text)
        # Phrases are looked for with the stop words taken out as well: "开个超市" says 开超市.
        content = "".join(token for run in runs for token in run)
        standard = dict.fromkeys([*self._expansions(text), *self._expansions(content)])
        expanded = [run for term in standard for run in self._content_runs(term)]
        own_words = self._words(runs)
        terms: dict[tuple[str, str], float] = {}
        for kind in ("word", "detail"):
            for word in self._words(expanded):
                terms[(kind, word)] = _SYNONYM
            for word in own_words:
                terms[(kind, word)] = 1.0
        for pair in _pairs(runs):
            terms[("pair", pair)] = 1.0
        for char in _chars(runs):
            terms[("char", char)] = 1.0
        scores: dict[int, float] = {}
        matched: dict[int, dict[str, float]] = {}
        for (kind, term), weight in terms.items():
            for index, contribution in self._channels[kind].postings.get(term, ()):
                gain = weight * contribution
                scores[index] = scores.get(index, 0.0) + gain
                best = matched.setdefault(index, {})
                best[term] = best.get(term, 0.0) + gain
        for phrase in {text, content}:
            for index in self._exact.get(phrase, ()):
                scores[index] *= _EXACT_BOOST
        ranked = sorted(scores, key=lambda i: (-scores[i], self._items[i].code))
        return [SearchHit(code=self._items[i].code, name=self._items[i].name,
                          score=round(scores[i], 4), matched_terms=_strongest(matched[i]))
                for i in ranked[:max(limit, 0)]]


def _primary_fields(item: CatalogItem) -> Iterator[tuple[str, str]]:
    yield "name", item.name
    for alias in item.aliases:
        yield "alias", alias
    for keyword in item.keywords:
        yield "keyword", keyword
    yield "department", item.department.removeprefix("县")


def _detail_fields(item: CatalogItem) -> Iterator[str]:
    for material in item.required_materials:
        yield material.name
    for question in item.questions:
        yield question.text
        yield from question.options


def _add(doc: dict[str, float], terms: Iterable[str], weight: float) -> None:
    for term in terms:
        doc[term] = doc.get(term, 0.0) + weight


def _pairs(runs: Iterable[Sequence[str]]) -> list[str]:
    """Character pairs across each run of content tokens."""
    out: list[str] = []
    for run in runs:
        joined = "".join(run)
        out.extend(joined[i:i + 2] for i in range(len(joined) - 1))
    return out


def _chars(runs: Iterable[Sequence[str]]) -> list[str]:
    """Chinese characters of the content tokens (digits and Latin letters say too little)."""
    return [c for run in runs for token in run for c in token
            if "\u4e00" <= c <= "\u9fff" and c not in STOP_WORDS]


def _strongest(gains: Mapping[str, float]) -> tuple[str, ...]:
    """Matched terms, strongest first, leaving out those inside a stronger one."""
    terms: list[str] = []
    for term in sorted(gains, key=lambda t: -gains[t]):
        if not any(term in t for t in terms):
            terms.append(term)
    return tuple(terms)
