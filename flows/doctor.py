"""``python -m flows.cli doctor``: the health checks, in one list (``CHECKS``), and the
Prefect ones (stages never import Prefect, so these live here).

A new check is a function ``Options -> list[Result]`` (tasks/core/doctor.py) and a line in
``CHECKS``: its name and how long it may take in all (seconds). The report keeps this order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tasks.core import doctor as core
from tasks.core.doctor import Check, Options, Result
from tasks.core.project import Project
from tasks.pools import pools, remote_targets, targets
from tasks.storage import doctor as storage

REQUEST_TIMEOUT_S = 5.0  # each Prefect API request of a check, seconds, no retries


@contextmanager
def _quick() -> Iterator[None]:
    """Prefect API calls that fail in seconds: no retries and a short request timeout
    (the client's defaults retry a server that does not answer for minutes)."""
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: REQUEST_TIMEOUT_S}):
        yield


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _health(url: str) -> Result:
    from prefect.client.orchestration import get_client

    with _quick(), get_client(sync_client=True) as client:
        error = client.api_healthcheck()
    if error is not None:
        fix = "start the server (prefect server start) or set PREFECT_API_URL to one that runs; unset: ephemeral"
        said = str(error).split(" - For more information", 1)[0]  # httpx's status errors end in a link
        return Result("prefect api", False, f"{url}/health fails: {type(error).__name__}: {said}", fix)
    return Result("prefect api", True, f"{url} answers")


def prefect_api(opts: Options) -> list[Result]:
    """The Prefect API: a server at PREFECT_API_URL answers /health; none set is the
    ephemeral API each run starts in its own process (nothing to check)."""
    url = _api_url()
    if url is None:
        return [Result("prefect api", True, "PREFECT_API_URL is not set: each run starts an ephemeral API")]
    return [_health(url)]


def _wanted(project: Project) -> dict[str, tuple[str, str]]:
    """{line name: (work pool, deployment)}: each remote hardware pool's benchmark
    deployment and the dispatch pool's ``compress-model`` (params.yaml pools, dispatch)."""
    from flows import per_model

    out = {}
    for spec in pools(project).values():
        if spec.work_pool is not None:
            out[f"work pool {spec.work_pool} ({spec.deployment_name})"] = (spec.work_pool, spec.deployment_name)
    dispatch_pool = per_model.config(project).work_pool
    out[f"work pool {dispatch_pool} ({per_model.DEPLOYMENT})"] = (dispatch_pool, per_model.DEPLOYMENT)
    return out


def _ephemeral_pools(project: Project) -> Result:
    remote = remote_targets(project)
    if remote:
        fix = "set PREFECT_API_URL to the server whose workers serve them, or leave them out of targets"
        return Result("work pools", False, f"targets {remote} need workers on a Prefect server: none is set", fix)
    return Result("work pools", True, "no Prefect server: runs serve this machine only (not checked)")


def work_pools(opts: Options) -> list[Result]:
    """Each configured work pool exists, holds its deployment and has a live worker."""
    from flows.dispatch import why_unavailable

    project = Project.at(opts.root)
    url = _api_url()
    if url is None:
        return [_ephemeral_pools(project)]
    if not _health(url).ok:
        return [Result("work pools", False, f"not checked: {url}/health fails", "see the prefect api line")]
    required = {p.work_pool for p in targets(project) if not p.inline}
    out = []
    with _quick():
        for line, (pool, deployment) in _wanted(project).items():
            why = why_unavailable(pool, deployment)
            if why is None:
                out.append(Result(line, True, "deployed, a live worker"))
            elif pool in required:
                out.append(Result(line, False, *why))
            else:  # a declared pool no nightly target needs: say so, without failing the check
                out.append(Result(line, True, f"{why[0]}; not in targets: only a run naming it needs it", why[1]))
    return out


CHECKS: dict[str, Check] = {
    "catalogue": Check(core.catalogue, timeout_s=30),
    "pins": Check(core.pins, timeout_s=30),
    "disk": Check(core.disk, timeout_s=10),
    # long enough for --start-s3 to start SeaweedFS; a stopped endpoint fails in seconds
    "s3": Check(storage.s3, timeout_s=90),
    "prefect api": Check(prefect_api, timeout_s=30),
    "work pools": Check(work_pools, timeout_s=60),
}


def doctor(opts: Options) -> list[Result]:
    """Every check of ``CHECKS``, side by side; the report's lines in order."""
    return core.run(CHECKS, opts)
