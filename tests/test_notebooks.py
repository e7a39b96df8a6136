"""The notebooks in notebooks/ run headless on tiny run records, so they never rot.

The slow tests train four tiny runs in process (a few seconds each), then execute
notebooks/run_records.ipynb with nbclient in a kernel running this interpreter, once on those
records and once on an empty records root. The fast test only reads the notebook file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from conftest import REPO_ROOT, compose_config
from dpshare.train import train

NOTEBOOK = REPO_ROOT / "notebooks" / "run_records.ipynb"

# ~1,400 simulated train records, one epoch of 7 noisy steps; one cheap attack and fidelity metric
# so that every panel of the notebook has data
TINY_RECORD = [
    "scale=smoke",
    "scale.max_records=2000",
    "trainer.max_epochs=1",
    "method.batch_size=200",
    "method.generator_dims=[64]",
    "method.discriminator_dims=[64]",
    "trainer.log_every_n_steps=1",
    "eval.attacks=[mia_dcr]",
    "eval.fidelity=[prdc]",
    "experiment_name=notebook_test",
]
RUNS = {
    "none_seed0": ["privacy=none", "seed=0"],
    "fixed_eps1_seed0": ["privacy=fixed", "privacy.target_epsilon=1.0", "seed=0"],
    "fixed_eps1_seed1": ["privacy=fixed", "privacy.target_epsilon=1.0", "seed=1"],
    "pid_eps1_seed0": [
        "privacy=pid",
        "privacy.target_epsilon=1.0",
        "privacy.monitor_every=2",
        "seed=0",
    ],
}


@pytest.fixture(scope="module")
def records_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A records root laid out like outputs/: four complete runs and one broken record."""
    root = tmp_path_factory.mktemp("records")
    for name, overrides in RUNS.items():
        train(compose_config([*TINY_RECORD, *overrides], root / "runs" / "notebook_test" / name))
    broken = root / "runs" / "notebook_test" / "broken"  # metrics.json but no config
    broken.mkdir()
    (broken / "metrics.json").write_text("{}\n", encoding="utf-8")
    return root


def execute(records_root: Path, scratch: Path) -> nbformat.NotebookNode:
    """Run every cell with DPSHARE_OUTPUT=records_root, in a kernel started from this
    interpreter (a throwaway kernel spec, so no installed spec is needed or changed)."""
    spec_dir = scratch / "kernels" / "dpshare-test"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dpshare test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    manager = AsyncKernelManager(
        kernel_name="dpshare-test",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]),
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, km=manager, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    env = dict(os.environ, DPSHARE_OUTPUT=str(records_root), OMP_NUM_THREADS="1")
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return nb


def printed(nb: nbformat.NotebookNode, cell_id: str | None = None) -> str:
    """Everything the code cells (or one of them) wrote to stdout/stderr."""
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code" and cell_id in (None, cell.id)
        for out in cell.outputs
        if out.output_type == "stream"
    )


def figures(nb: nbformat.NotebookNode) -> dict[str, int]:
    """Number of PNG images each code cell displayed, by cell id."""
    return {
        cell.id: sum("image/png" in out.get("data", {}) for out in cell.outputs)
        for cell in nb.cells
        if cell.cell_type == "code"
    }


def test_notebook_is_saved_clean() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    parameters = "".join(code[0]["source"])
    assert "RECORDS_ROOT" in parameters and "EXPERIMENT" in parameters


@pytest.mark.slow
def test_notebook_draws_every_figure_from_records(records_root: Path, tmp_path: Path) -> None:
    nb = execute(records_root, tmp_path)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    loaded = printed(nb, "load")
    assert f"{len(RUNS)} complete runs under {records_root}" in loaded
    assert "skipped" in loaded and "broken" in loaded  # reported, not fatal
    assert "No run reports" not in printed(nb)  # every requested metric was recorded
    shown = figures(nb)
    assert shown["utility"] == 1 and shown["schedule"] == 1 and shown["eval"] == 1


@pytest.mark.slow
def test_notebook_with_no_records_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    nb = execute(empty, tmp_path / "scratch")
    assert f"No runs found under {empty}" in printed(nb, "load")
    assert sum(figures(nb).values()) == 0
