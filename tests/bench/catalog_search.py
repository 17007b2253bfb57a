"""Benchmark: colloquial catalog search — hit rates, build time, query time.

    python -m tests.bench.catalog_search [--general] [--repeat 20] [--misses]

Builds ``CatalogSearch`` over the shipped catalog and synonyms and runs every query of
``tests/unit/core/catalog_queries.json``: a query hits at k when one of its expected codes
is among the first k results. ``build_ms`` is the first build in the process (jieba's
import included), ``rebuild_ms`` a second one; query times are per call over ``--repeat``
rounds. ``--general`` loads jieba's 350,000-word general dictionary into the tokenizer
(its load is part of ``build_ms``). ``--misses`` lists the queries whose top result is
wrong. Prints one JSON object last: ``top1``, ``top3``, ``build_ms``, ``query_ms_p50``,
``query_ms_p99`` and the rates of the held-out queries (written after the synonym table
and item aliases were last tuned, and not tuned against).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vwindow.catalog import default_items, default_synonyms
from vwindow.catalog_search import CatalogSearch, jieba_tokenizer

QUERIES = Path(__file__).resolve().parents[1] / "unit" / "core" / "catalog_queries.json"


@dataclass(frozen=True)
class QueryCase:
    query: str
    expected: tuple[str, ...]
    set: str
    """"dev" (tuned against) or "holdout" (written afterwards, never tuned against)."""


def load_queries(path: Path = QUERIES) -> list[QueryCase]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [QueryCase(query=d["query"], expected=tuple(d["expected"]), set=d["set"])
            for d in data]


def hit_rates(search: CatalogSearch, cases: Sequence[QueryCase]) -> dict[str, float]:
    """Share of ``cases`` with an expected code first (top1) or among the first three."""
    top1 = top3 = 0
    for case in cases:
        codes = [hit.code for hit in search.search(case.query, limit=3)]
        top1 += bool(codes) and codes[0] in case.expected
        top3 += any(code in case.expected for code in codes)
    n = max(len(cases), 1)
    return {"top1": top1 / n, "top3": top3 / n}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--general", action="store_true",
                        help="load jieba's general dictionary as well")
    parser.add_argument("--repeat", type=int, default=20, help="rounds of timed queries")
    parser.add_argument("--misses", action="store_true", help="list top-1 misses")
    args = parser.parse_args(argv)

    items, synonyms = default_items(), default_synonyms()
    cases = load_queries()
    started = time.perf_counter()
    search = CatalogSearch(items, synonyms,
                           tokenizer=jieba_tokenizer(general_dictionary=args.general))
    build_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    CatalogSearch(items, synonyms, tokenizer=jieba_tokenizer(general_dictionary=args.general))
    rebuild_ms = (time.perf_counter() - started) * 1000

    times: list[float] = []
    for _ in range(args.repeat):
        for case in cases:
            started = time.perf_counter()
            search.search(case.query)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()

    if args.misses:
        for case in cases:
            hits = search.search(case.query, limit=3)
            if not hits or hits[0].code not in case.expected:
                mark = "top3" if any(h.code in case.expected for h in hits) else "MISS"
                shown = ", ".join(f"{h.code} {h.name} {h.score:.1f}" for h in hits)
                print(f"{mark} [{case.set}] {case.query} → want {'/'.join(case.expected)}; "
                      f"got {shown}")

    overall = hit_rates(search, cases)
    holdout = hit_rates(search, [c for c in cases if c.set == "holdout"])
    print(json.dumps({
        "queries": len(cases),
        "items": len(items),
        "general_dictionary": args.general,
        "top1": round(overall["top1"], 4),
        "top3": round(overall["top3"], 4),
        "holdout_top1": round(holdout["top1"], 4),
        "holdout_top3": round(holdout["top3"], 4),
        "build_ms": round(build_ms, 1),
        "rebuild_ms": round(rebuild_ms, 1),
        "query_ms_p50": round(statistics.median(times), 3),
        "query_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
