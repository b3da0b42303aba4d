"""Great Expectations suites: the evaluation data and the metrics table.

A failing suite raises ``QualityGateError`` naming each failed expectation and column,
and blocks the publish. GX 1.x, ephemeral context, pandas data frames.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("pipeline")


class QualityGateError(ValueError):
    """A Great Expectations suite failed; the message names the failed expectations."""


def _run_suite(name: str, df: pd.DataFrame, expectations: list[Any], docs: Path | None = None) -> dict[str, Any]:
    """Run one suite; with ``docs``, keep its Data Docs site (pages and stylesheets: GX's
    fonts and images, 4 MB a site, are left out) in ``docs/<name>/``. GX's own temporary
    site is removed either way."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GX draws a "Calculating Metrics" tqdm bar per validation on stderr, TQDM_DISABLE or not
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(f"{name}-source")
    asset = source.add_dataframe_asset(name=f"{name}-asset")
    batch = asset.add_batch_definition_whole_dataframe(f"{name}-batch")
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for e in expectations:
        suite.add_expectation(e)
    vd = context.validation_definitions.add(gx.ValidationDefinition(name=f"{name}-validation", data=batch, suite=suite))
    # A checkpoint rather than vd.run(): its UpdateDataDocsAction renders the Data Docs site
    # (suite, results, index) that is published beside the artifact.
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}-checkpoint",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")],
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": df})
    result = next(iter(run.run_results.values()))
    failed = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            column = cfg.kwargs.get("column", "") if cfg is not None else ""
            etype = cfg.type if cfg is not None else "?"
            failed.append(f"{etype}({column})" if column else etype)
    sites = context.get_docs_sites_urls()
    url = sites[0].get("site_url") if sites else None
    site = Path(url.removeprefix("file://")).parent if url else None
    kept = None
    if site is not None and site.is_dir():
        if docs is not None and result.success:
            keep = shutil.ignore_patterns("fonts", "images", "*.otf", "*.png", "*.gif", "*.svg")
            shutil.copytree(site, docs / name, ignore=keep, dirs_exist_ok=True)
            kept = f"{docs.name}/{name}/index.html"
        shutil.rmtree(site, ignore_errors=True)
    summary = {
        "suite": name,
        "success": bool(result.success),
        "evaluated": len(result.results),
        "failed": failed,
        "docs": kept,
    }
    if not result.success:
        raise QualityGateError(f"quality gate {name!r} failed: {', '.join(failed)}")
    log.info("quality gate %s passed (%d expectations)", name, len(result.results))
    return summary


def check_text_eval_data(
    texts: list[str], labels: list[int], name: str = "text-eval-data", docs: Path | None = None
) -> dict[str, Any]:
    """Labelled texts: non-empty strings, binary labels, both classes present in balance."""
    import great_expectations as gx

    df = pd.DataFrame({"text": texts, "label": labels})
    df["length"] = df["text"].fillna("").str.len()
    e = gx.expectations
    return _run_suite(
        name,
        df,
        [
            e.ExpectTableColumnsToMatchSet(column_set=["text", "label", "length"]),
            e.ExpectTableRowCountToBeBetween(min_value=20),
            e.ExpectColumnValuesToNotBeNull(column="text"),
            e.ExpectColumnValuesToBeBetween(column="length", min_value=1, max_value=5000),
            # the length distribution: sentences and reviews, not fragments nor whole documents
            e.ExpectColumnMedianToBeBetween(column="length", min_value=20, max_value=2000),
            # every text one length: a file truncated or padded to a fixed width
            # (GX 1.x cannot store a quantile expectation's result: numpy bools in its JSON)
            e.ExpectColumnStdevToBeBetween(column="length", min_value=1.0),
            e.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
            e.ExpectColumnMeanToBeBetween(column="label", min_value=0.3, max_value=0.7),
        ],
        docs,
    )


def check_image_eval_data(
    labels: list[int], pixel_mean: float, name: str = "image-eval-data", docs: Path | None = None
) -> dict[str, Any]:
    """Labelled images: ten classes, none under 5 %, pixel mean of a normalised set near 0."""
    import great_expectations as gx

    df = pd.DataFrame({"label": labels})
    e = gx.expectations
    return _run_suite(
        name,
        df.assign(pixel_mean=pixel_mean),
        [
            e.ExpectTableRowCountToBeBetween(min_value=10),
            e.ExpectColumnValuesToNotBeNull(column="label"),
            e.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(10))),
            e.ExpectColumnProportionOfUniqueValuesToBeBetween(column="label", max_value=1.0),
            e.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=list(range(10))),
            e.ExpectColumnValuesToBeBetween(column="pixel_mean", min_value=-0.5, max_value=0.5),
        ],
        docs,
    )


def check_metrics(
    rows: list[dict[str, Any]], quality_columns: list[str], name: str = "metrics-table", docs: Path | None = None
) -> dict[str, Any]:
    """The metrics table: one row per artifact, no NaN/Inf, positive sizes, bounded quality."""
    import great_expectations as gx

    df = pd.DataFrame(rows)
    e = gx.expectations
    expectations: list[Any] = [
        e.ExpectColumnValuesToNotBeNull(column="artifact"),
        e.ExpectColumnValuesToBeUnique(column="artifact"),
        e.ExpectColumnValuesToBeBetween(column="size_bytes", min_value=1),
    ]
    for col in quality_columns:
        expectations.append(e.ExpectColumnValuesToNotBeNull(column=col))
        # between -1 and 1 rejects NaN and Inf too: correlations, accuracies and cosines all lie there
        expectations.append(e.ExpectColumnValuesToBeBetween(column=col, min_value=-1.0, max_value=1.0))
    return _run_suite(name, df, expectations, docs)


def check_custom_eval_data(
    examples: Any, task: str, name: str = "custom-eval-data", docs: Path | None = None
) -> dict[str, Any]:
    """A custom model's evaluation examples (``model_compression.byo.data.Examples``):
    finite inputs; labels present, integer and every class >= 1/(4 x classes) of the rows
    (classification); non-empty texts of bounded length and finite scores (text-embedding)."""
    import great_expectations as gx

    e = gx.expectations
    expectations: list[Any] = [e.ExpectTableRowCountToBeBetween(min_value=10)]
    if examples.texts is not None:
        df = pd.DataFrame({"text": list(examples.texts)})
        df["length"] = df["text"].fillna("").str.len()
        expectations += [
            e.ExpectColumnValuesToNotBeNull(column="text"),
            e.ExpectColumnValuesToBeBetween(column="length", min_value=1, max_value=10000),
        ]
        if examples.y is not None:  # per-text labels, or pair scores (texts stacked first, then second)
            y = np.asarray(examples.y, dtype="float64")
            df["target"] = np.tile(y, len(df) // max(len(y), 1))
            expectations.append(e.ExpectColumnValuesToBeBetween(column="target", min_value=-1e9, max_value=1e9))
        return _run_suite(name, df, expectations, docs)
    x = examples.x.reshape(len(examples.x), -1).astype("float64")
    df = pd.DataFrame({"finite": np.isfinite(x).all(1)})
    expectations.append(e.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]))
    if task == "classification":
        labels = pd.Series(examples.y, dtype="float64") if examples.y is not None else pd.Series([None] * len(df))
        df["label"] = labels.to_numpy()
        classes = max(int(labels.nunique()), 1)
        df["class_share"] = df["label"].map(labels.value_counts(normalize=True)).astype("float64")
        expectations += [
            e.ExpectColumnValuesToNotBeNull(column="label"),
            e.ExpectColumnValuesToBeBetween(column="label", min_value=0),
            e.ExpectColumnValuesToBeBetween(column="class_share", min_value=0.25 / classes),
        ]
    return _run_suite(name, df, expectations, docs)


def feeds_sha256(feeds: list[dict[str, Any]]) -> str:
    """sha256 over calibration feeds: every array's name, dtype, shape and bytes, in order."""
    import hashlib

    h = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            a = np.ascontiguousarray(feed[name])
            h.update(f"{name}|{a.dtype}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def check_calibration_data(
    feeds: list[dict[str, Any]], pinned: str | None, name: str = "calibration-data", docs: Path | None = None
) -> dict[str, Any]:
    """The calibration batches: present, finite, and (when ``pinned``) exactly the set the
    pin names: int8 scales and sensitivity scores are only reproducible from the same set."""
    import great_expectations as gx

    digest = feeds_sha256(feeds)
    rows: list[dict[str, Any]] = [
        {"batch": i, "samples": len(next(iter(f.values()))), "finite": all(np.isfinite(v).all() for v in f.values())}
        for i, f in enumerate(feeds)
    ]
    df = pd.DataFrame(rows or [{"batch": None, "samples": 0, "finite": False}]).assign(calibration_sha256=digest)
    e = gx.expectations
    expectations: list[Any] = [
        e.ExpectColumnValuesToNotBeNull(column="batch"),
        e.ExpectColumnValuesToBeBetween(column="samples", min_value=1),
        e.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
    ]
    if pinned:
        expectations.append(e.ExpectColumnValuesToBeInSet(column="calibration_sha256", value_set=[pinned]))
    else:
        log.warning("calibration set not pinned: pin it with gates.<model>.calibration_sha256: %s", digest)
    summary = _run_suite(name, df, expectations, docs)
    return {**summary, "calibration_sha256": digest, "pinned": bool(pinned)}


def check_release(
    rows: list[dict[str, Any]],
    quality_columns: list[str],
    held: list[str],
    budgets: dict[str, Any],
    name: str = "release-table",
    docs: Path | None = None,
) -> dict[str, Any]:
    """The table of what is about to be published on one pool: finite quality, every drop
    within tolerance (column ``<metric>_excess``, drop minus the artifact's own limit, for
    each metric in ``held``; empty where the artifact's tolerance leaves the metric out),
    size and p50 latency within the model's budgets, embedding norms within [0.8, 1.25] x fp32's."""
    import great_expectations as gx

    df = pd.DataFrame(rows)
    e = gx.expectations
    expectations: list[Any] = [
        e.ExpectColumnValuesToBeUnique(column="artifact"),
        # without a budget the upper bounds still reject Inf (a timer that never stopped)
        e.ExpectColumnValuesToBeBetween(
            column="size_bytes", min_value=1, max_value=budgets.get("max_size_bytes", 1e13)
        ),
        e.ExpectColumnValuesToBeBetween(
            column="p50_ms", min_value=0, max_value=budgets.get("max_p50_ms", 1e7), strict_min=True
        ),
    ]
    for col in ["size_bytes", "p50_ms", *quality_columns]:  # GX counts NaN as missing: "between" skips it
        expectations.append(e.ExpectColumnValuesToNotBeNull(column=col))
    for col in quality_columns:
        expectations.append(e.ExpectColumnValuesToBeBetween(column=col, min_value=-1.0, max_value=1.0))
    for metric in held:  # GX skips the empty cells: a metric another artifact's tolerance leaves out
        expectations.append(e.ExpectColumnValuesToBeBetween(column=f"{metric}_excess", max_value=1e-12))
    if "embedding_norm_ratio" in df:
        norms = e.ExpectColumnValuesToBeBetween(column="embedding_norm_ratio", min_value=0.8, max_value=1.25)
        expectations.append(norms)
    return _run_suite(name, df, expectations, docs)
