"""Execute every notebook in notebooks/ (nbclient, headless) so they never rot.

Each runs in order in one fresh work directory (``WARDEN_NOTEBOOK_DIR``), so notebook 1
builds its ClickHouse data set and notebook 4 reads the choices of notebooks 2 and 3. No
network, no display: matplotlib's Agg backend, embeddings cached under var/cache.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.scale import LONG

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))

# make test runs every cell of every notebook on smaller sweeps: the same code, fewer grid
# points (papermill's convention: a cell of overrides right after the "# parameters" cell).
# make test-long runs the notebooks as shipped.
CI_PARAMETERS = {
    "02_drift_sweep.ipynb": "run_lengths = [3_000, 100_000]\nwindow_sizes = [50]",
    "03_cost_sweep.ipynb": "arl0s = [1e3, 1e5, 1e7]\nseeds = [1]",
}


def inject_parameters(nb: nbformat.NotebookNode, source: str) -> None:
    """Insert ``source`` as a code cell after the notebook's ``# parameters`` cell."""
    at = next(i for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" and cell.source.lstrip().startswith("# parameters"))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("# injected parameters (tests/test_notebooks.py)\n" + source))


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


def test_there_are_notebooks() -> None:
    assert NAMES[:4] == ["01_traffic.ipynb", "02_drift_sweep.ipynb", "03_cost_sweep.ipynb",
                         "04_write_config.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_without_errors(name: str, work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDEN_NOTEBOOK_DIR", str(work_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    if not LONG and name in CI_PARAMETERS:
        inject_parameters(nb, CI_PARAMETERS[name])
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{name}: a cell failed\n{exc}")
    nbformat.write(nb, work_dir / name)  # the executed copy, for a look after a failure
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    if name.startswith("04"):
        assert (work_dir / "config" / "detectors.yaml").is_file()
        assert (work_dir / "config" / "budgets.yaml").is_file()
    else:
        assert images, f"{name} drew no figure"
