"""Shared fixtures: paths to the shipped data and a minimal valid recipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
MINI = ROOT / "tests" / "recipes" / "mini.yaml"


@pytest.fixture(scope="session")
def baked(tmp_path_factory) -> Path:
    """The whole bake of tests/recipes/mini.yaml (Python's hash seed 1), shared by the tests that read one."""
    runs_dir = tmp_path_factory.mktemp("runs")
    result = subprocess.run([sys.executable, "-m", "fournil", "run", str(MINI), "--runs-dir", str(runs_dir)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (runs_dir / "stdout.txt").write_text(result.stdout)
    return runs_dir / "mini"


def pytest_collection_modifyitems(items):
    """The tests on the local Ray instance run last: it starts once, and no test forks workers beside it."""
    items.sort(key=lambda item: "ray_local" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs, no dashboard) for every Ray test of the session; Ray is in the dev extra."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def minimal_recipe_data() -> dict:
    """The smallest valid recipe, as plain data (paths absolute)."""
    return {
        "name": "mini",
        "languages": {"fr": 0.5, "en": 0.5},
        "sources": [
            {"name": "fr-maint", "path": str(SAMPLE / "fr" / "maint-guide.jsonl.zst"), "lang": "fr", "license": "GPL-2.0-or-later"},
            {"name": "en-maint", "path": str(SAMPLE / "en" / "maint-guide.jsonl.zst"), "lang": "en", "license": "GPL-2.0-or-later"},
        ],
    }


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (bitwise loss comparisons), then restore the count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
