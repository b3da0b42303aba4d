"""The documentation: the MkDocs site builds with --strict, the README fits a screen or two
and every relative link in it and in BENCHMARKS.md points at a file that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_site_builds_strictly(tmp_path: Path):
    """--strict turns every warning into a failure: a broken link or anchor, a page missing from nav."""
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pages = {p.relative_to(site).as_posix() for p in site.rglob("index.html")}
    assert {"index.html", "own-model/index.html", "configuration/index.html", "reliability/index.html"} <= pages


def test_a_broken_link_fails_the_build(tmp_path: Path):
    """The check can fail: the same configuration over a page with a dead link does."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the pools](pools.md).\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nstrict: true\nnav: [{Home: index.md}]\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0 and "pools.md" in done.stderr


@pytest.mark.parametrize("name", ["README.md", "BENCHMARKS.md"])
def test_relative_links_of_the_top_level_pages_resolve(name: str):
    text = (ROOT / name).read_text()
    targets = [t for t in LINK.findall(text) if "://" not in t]
    assert targets, f"{name} links to nothing"
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_the_readme_fits_about_150_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
