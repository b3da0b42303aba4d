"""Every pipeline stage, in run order: the one list that the CLI, DVC and Prefect share."""

from __future__ import annotations

from tasks.baseline import BASELINE
from tasks.benchmark import BENCHMARK
from tasks.compress import DISTILL, FACTORIZE, PRUNE, QUANTIZE, SCORE
from tasks.fetch import FETCH, ZOO
from tasks.package import PACKAGE
from tasks.publish import PUBLISH
from tasks.recipe import RECIPE
from tasks.report import REPORT
from tasks.search import SEARCH
from tasks.stage import Stage
from tasks.validate import VALIDATE

STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        ZOO,
        FETCH,
        BASELINE,
        SCORE,
        PRUNE,
        QUANTIZE,
        FACTORIZE,
        DISTILL,
        RECIPE,
        SEARCH,
        PACKAGE,
        VALIDATE,
        BENCHMARK,
        PUBLISH,
        REPORT,
    )
}

ORDER: tuple[str, ...] = tuple(STAGES)  # run order, one model at a time
