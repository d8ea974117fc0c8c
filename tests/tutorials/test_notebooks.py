"""The teaching notebooks in tutorials/: paired sources in sync, and every notebook runs.

Each notebook ``tutorials/NN_name.ipynb`` is paired (jupytext, percent format) with
``tutorials/NN_name.py``. Two checks per pair:

* drift: the notebook's cells (type and source) equal the cells jupytext reads from the .py,
  so the committed notebook (with its outputs from a full run) shows the code that is tested;
* execution: the .py, converted to a notebook in memory, runs top to bottom in a fresh
  ``python3`` kernel with ``DYNCONV_TUTORIAL_FAST=1`` (small settings); any cell error fails.

Needs the "tutorials" packages (jupytext, nbclient, ipykernel, matplotlib), which the "test"
extra installs: a missing one is an error here, not a skip.
"""
import importlib.util
from pathlib import Path

import ipykernel  # noqa: F401  (the kernel the notebooks run in)
import jupytext
import matplotlib  # noqa: F401  (the notebooks plot)
import nbclient
import pytest

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
_spec = importlib.util.spec_from_file_location("build_notebooks", TUTORIALS / "build_notebooks.py")
build_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_notebooks)
SOURCES = build_notebooks.sources()
CELL_TIMEOUT_S = 300
# Tutorials that need a package beyond the "tutorials" extra: skipped (only) where it is missing.
NEEDS = {"06_reference_for_ports": "torch"}


def _cells(notebook):
    """(cell_type, source) of every non-empty cell: what the drift check compares."""
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells if cell.source.strip()]


def test_every_tutorial_is_paired():
    assert SOURCES, f"no tutorials found in {TUTORIALS}"
    notebooks = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem for p in notebooks] == [p.stem for p in SOURCES], \
        "every tutorials/NN_*.py needs a paired .ipynb and vice versa (run `jupytext --sync`)"


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_matches_its_source(source):
    notebook_path = source.with_suffix(".ipynb")
    assert notebook_path.exists(), \
        f"{notebook_path.name} is missing; run `jupytext --sync {source}`"
    from_source = _cells(jupytext.read(source))
    from_notebook = _cells(jupytext.read(notebook_path))
    assert len(from_notebook) == len(from_source), (
        f"{notebook_path.name} has {len(from_notebook)} cells, {source.name} has "
        f"{len(from_source)}: they have drifted apart; run `jupytext --sync` and re-execute")
    for index, (a, b) in enumerate(zip(from_notebook, from_source)):
        assert a == b, (f"cell {index} differs between {notebook_path.name} and {source.name}:\n"
                        f"--- notebook ({a[0]}):\n{a[1]}\n--- source ({b[0]}):\n{b[1]}")


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_notebook_executes(source, monkeypatch):
    if source.stem in NEEDS:
        pytest.importorskip(NEEDS[source.stem], reason=f"{source.name} ports a PyTorch layer")
    monkeypatch.setenv(build_notebooks.FAST_VARIABLE, "1")
    for name in ("MPLBACKEND", "PYTHONPATH"):   # execute() sets both for the kernel
        monkeypatch.setenv(name, build_notebooks.os.environ.get(name, ""))
    # raises CellExecutionError naming the failing cell, with its traceback
    notebook = build_notebooks.execute(source, timeout_s=CELL_TIMEOUT_S)
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert not errors, f"{source.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    images = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert images, f"{source.name} produced no plot"
