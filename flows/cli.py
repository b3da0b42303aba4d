"""Command line: ``python -m flows.cli --help``.

python -m flows.cli add NAME --model FILE --eval FILE [--task T] [--tolerance METRIC=DROP]
                                              add a team's own model to the catalogue, then plan it
python -m flows.cli plan [MODEL ...]          what a run would do, stage by stage (dry run)
python -m flows.cli run [MODEL ...]           run the nightly flow for these models
python -m flows.cli run --dry-run [MODEL ...] the same as plan
python -m flows.cli run --pool cpu-avx2 --workers 2 [MODEL ...]
python -m flows.cli sync                      write dvc.yaml and prefect.yaml from params.yaml and the stages
python -m flows.cli doctor                    health check: S3, Prefect, work pools, disk, catalogue, pins
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tasks.core.pipeline import ORDER, stage_status
from tasks.core.project import Project

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Nightly model compression: plan or run.")
console = Console()
Models = Annotated[list[str] | None, typer.Argument(help="Catalogue models (default: the whole catalogue).")]
Root = Annotated[str, typer.Option(help="Project root holding params.yaml and data/.")]


def show_plan(project: Project, models: list[str]) -> None:
    for model in models:
        t = Table(title=f"{model} ({project.kind_name(model)})")
        t.add_column("stage")
        t.add_column("status")
        for name in ORDER:
            status = stage_status(project, model, name)
            t.add_row(name, f"[green]{status}[/]" if status == "up to date" else f"[yellow]{status}[/]")
        console.print(t)


@app.command()
def plan(
    models: Models = None,
    root: Root = ".",
    as_json: Annotated[bool, typer.Option("--json", help="Print {model: {stage: status}} as JSON.")] = False,
) -> None:
    """Print what a run would do for each model and stage, without running anything."""
    project = Project.at(root)
    chosen = models or project.catalogue()
    for m in chosen:
        project.check(m)
    if as_json:
        print(json.dumps({m: {n: stage_status(project, m, n) for n in ORDER} for m in chosen}, indent=2))
        return
    show_plan(project, chosen)


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="The new model's name: lower-case letters, digits, dashes.")],
    model: Annotated[
        str,
        typer.Option(help="The model file: .onnx, .safetensors, .pt (TorchScript), .pt2; a path, file:// or s3://."),
    ],
    eval_data: Annotated[
        str,
        typer.Option(
            "--eval",
            help="The evaluation data: .npz, .parquet, .csv, an image folder (text-embedding: text1,text2,score).",
        ),
    ],
    task: Annotated[str, typer.Option(help="classification | agreement | text-embedding.")] = "classification",
    tolerance: Annotated[
        list[str] | None, typer.Option(help="METRIC=DROP (0.01, 1%, interval); repeat. Default: the task's.")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="One example's input shape, no batch axis (1,28,28); read from ONNX.")
    ] = None,
    input_name: Annotated[str | None, typer.Option(help="The input's name; read from ONNX.")] = None,
    dtype: Annotated[str | None, typer.Option(help="The input dtype; read from ONNX, else float32.")] = None,
    mean: Annotated[
        str | None, typer.Option(help="Normalisation (x - mean) / std: one value, or one per channel (a,b,c).")
    ] = None,
    std: Annotated[str | None, typer.Option(help="See --mean.")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="A text model's tokenizer folder.")] = None,
    max_length: Annotated[int | None, typer.Option(help="A text model's token limit (default 128).")] = None,
    factory: Annotated[
        str | None, typer.Option(help="Safetensors: package.module:function building the module.")
    ] = None,
    factory_arg: Annotated[list[str] | None, typer.Option(help="KEY=VALUE for the factory; repeat.")] = None,
    probe: Annotated[
        str | None, typer.Option(help="text-embedding: labelled sentences (text,label) for a probe.")
    ] = None,
    model_format: Annotated[
        str | None, typer.Option("--format", help="onnx | safetensors | torchscript | pt2 (default: the suffix).")
    ] = None,
    root: Root = ".",
) -> None:
    """Add a team's own model to the catalogue (kind custom): read what the files say, check model and
    data, hash them, write a minimal entry into params.yaml (nothing on any error), then plan it."""
    import yaml

    from tasks import onboard
    from tasks.storage.s3 import S3Error

    def ask(flag: str, question: str, default: str | None) -> str:
        return str(typer.prompt(f"{question} ({flag})", default=default))

    try:
        request = onboard.from_flags(
            name=name, model=model, eval=eval_data, task=task, tolerance=tolerance or [], probe=probe,
            format=model_format, input_name=input_name, shape=shape, dtype=dtype, mean=mean, std=std,
            tokenizer=tokenizer, max_length=max_length, factory=factory, factory_arg=factory_arg or [],
        )  # fmt: skip
        added = onboard.add(root, request, ask if sys.stdin.isatty() else None)
    except (ValueError, OSError, S3Error, yaml.YAMLError) as e:
        Console(stderr=True).print(
            f"[red]error:[/] {escape(str(e))}\nparams.yaml unchanged", highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    for topic, said in added.notes:
        console.print(f"[bold]{topic:<14}[/]{escape(said)}", highlight=False, soft_wrap=True)
    plan([name], root)


@app.command()
def sync(root: Root = ".") -> None:
    """Write dvc.yaml (from the stage declarations) and prefect.yaml (from params.yaml's pools)."""
    from flows import deployments
    from tasks.core import dvcyaml

    project = Project.at(root)
    for name, changed in (("dvc.yaml", dvcyaml.write(project)), ("prefect.yaml", deployments.write(project.root))):
        console.print(f"{name}: {'written' if changed else 'already current'}")


@app.command()
def limits(models: Models = None, root: Root = ".") -> None:
    """Create, on the Prefect server of PREFECT_API_URL, the per-model concurrency limits that
    prefect.yaml declares (``concurrency``), so the nightly and manual runs of a model queue."""
    from flows import concurrency

    if concurrency.server_url() is None:
        raise typer.BadParameter("PREFECT_API_URL is not set: limits live on a Prefect server, not the ephemeral API")
    project = Project.at(root)
    chosen = models or project.catalogue()
    created = set(concurrency.ensure(chosen))
    for m in chosen:
        name = concurrency.limit_name(m)
        console.print(f"{name}: {'created' if name in created else 'exists'}")


@app.command()
def doctor(
    root: Root = ".",
    start_s3: Annotated[
        bool, typer.Option(help="Start the embedded SeaweedFS to check it (default: it starts on demand).")
    ] = False,
    create_buckets: Annotated[bool, typer.Option(help="Create the configured buckets the S3 endpoint lacks.")] = False,
) -> None:
    """Check what a run needs, one pass or fail line each with the fix; exit 1 if any fails."""
    from pathlib import Path

    from rich.markup import escape

    from flows.doctor import doctor as checks
    from tasks.core.doctor import Options

    results = checks(Options(Path(root), start_s3=start_s3, create_buckets=create_buckets))
    width = max(len(r.name) for r in results)
    for r in results:
        mark = "[green]PASS[/]" if r.ok else "[red]FAIL[/]"
        console.print(f"{mark}  {escape(r.name.ljust(width))}  {escape(r.detail)}", soft_wrap=True)
        if r.fix:
            console.print(f"      {' ' * width}  fix: {escape(r.fix)}", soft_wrap=True)
    failed = sum(not r.ok for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed" if failed else f"{len(results)} passed")
    if failed:
        raise typer.Exit(1)


@app.command()
def run(
    models: Models = None,
    root: Root = ".",
    pool: Annotated[
        list[str] | None, typer.Option(help="Hardware pools to serve (repeat); default: targets in params.yaml.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Models side by side on a local Dask cluster of this size.")] = 1,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Run on the Dask cluster at this address (tcp://host:8786); needs PREFECT_API_URL."),
    ] = None,
    publish: Annotated[bool, typer.Option(help="Upload what passes; --no-publish stops after the benchmark.")] = True,
    dispatch: Annotated[
        bool, typer.Option(help="One compress-model flow run per model on the dispatch work pool (any worker).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and stop.")] = False,
) -> None:
    """Run the nightly flow (Prefect, ephemeral unless PREFECT_API_URL is set) for MODELS."""
    if dry_run:
        plan(models, root)
        return
    from flows.nightly import run_and_report

    args = {"pools": pool or None, "workers": workers, "publish": publish, "dask_address": dask_address}
    code = run_and_report(Project.at(root), models or None, "run", **args, dispatch=dispatch)
    if code:
        raise typer.Exit(code)


if __name__ == "__main__":
    app()
