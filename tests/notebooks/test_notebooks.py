"""The analysis notebooks run top to bottom on the demo data and are stored without outputs.

Each notebook builds its own temporary database, so these tests use no fixtures (and run once,
not per database backend). The kernel is this interpreter, through a kernelspec written to a
temporary directory: nothing depends on a kernel being registered with Jupyter.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "huiqi-test-python"
CELL_TIMEOUT = 600


def _kernel_manager(tmp_path: Path) -> AsyncKernelManager:
    """Return a kernel manager that starts ipykernel on this very interpreter."""
    kernels = tmp_path / "kernels"
    # ipykernel writes argv with sys.executable, i.e. the venv running the tests; IPython's
    # profile and history stay in the temporary directory, out of the user's home.
    write_kernel_spec(
        kernels / KERNEL_NAME,
        overrides={"display_name": "Huiqi tests", "env": {"IPYTHONDIR": str(tmp_path / "ipython")}},
        extra_arguments=["--HistoryManager.hist_file=:memory:"],
    )
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def test_the_matching_quality_notebook_is_collected() -> None:
    assert ROOT / "notebooks" / "matching_quality.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and (cell.outputs or cell.execution_count)
    ]
    assert not dirty, f"clear the outputs of cells {dirty} before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_without_errors(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on the first error
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
    assert all(cell.execution_count for cell in nb.cells if cell.cell_type == "code")
