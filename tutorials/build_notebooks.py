"""Execute the tutorials and write each paired .ipynb with its outputs.

    python tutorials/build_notebooks.py                 # every tutorial, full settings
    python tutorials/build_notebooks.py 01 03           # only the tutorials whose names start so
    DYNCONV_TUTORIAL_FAST=1 python tutorials/build_notebooks.py   # small settings (quick look)

The percent-format .py files are the sources; each is read with jupytext, run top to bottom in
a fresh ``python3`` kernel with nbclient (cwd = tutorials/), and written next to it as .ipynb
with the plots in its outputs. The test suite (tests/tutorials/test_notebooks.py) runs the same
``execute`` in fast mode and checks that every .ipynb still matches its source.
"""
import os
import sys
import time
from pathlib import Path

import jupytext
import nbclient

TUTORIALS = Path(__file__).resolve().parent
REPOSITORY = TUTORIALS.parent
FAST_VARIABLE = "DYNCONV_TUTORIAL_FAST"


def sources():
    """The tutorial sources, in order: tutorials/NN_name.py."""
    return sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


def execute(source, timeout_s=1800):
    """Run ``source`` (a percent-format .py) in a fresh python3 kernel; return the notebook.

    The kernel inherits this process's environment, so DYNCONV_TUTORIAL_FAST applies to it, and
    imports ``dynconv_np`` from this working tree (the repository root goes first on PYTHONPATH),
    installed or not. Raises nbclient's CellExecutionError (naming the cell and its traceback)
    if a cell fails.
    """
    notebook = jupytext.read(source)
    # Plots go into the outputs whatever MPLBACKEND the caller has (CI often sets Agg).
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    client = nbclient.NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                                     resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()
    return notebook


def main(prefixes):
    chosen = [s for s in sources() if not prefixes or s.name.startswith(tuple(prefixes))]
    mode = "FAST" if os.environ.get(FAST_VARIABLE, "0") == "1" else "full"
    for source in chosen:
        start = time.perf_counter()
        notebook = execute(source)
        jupytext.write(notebook, source.with_suffix(".ipynb"))
        print(f"{source.name}: executed ({mode} settings) in {time.perf_counter() - start:.1f} s "
              f"-> {source.with_suffix('.ipynb').name}")


if __name__ == "__main__":
    main(sys.argv[1:])
