"""Run the notebooks top to bottom: `python notebooks/execute.py [--save]` (`make notebooks`).

With --save their outputs are written back, as committed; the tests run them without saving.
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent
NOTEBOOKS = sorted(FOLDER.glob("[0-9][0-9]-*.ipynb"))


def execute(path: Path, save: bool = False) -> nbformat.NotebookNode:
    """Execute one notebook in its folder; raises on the first failing cell."""
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(FOLDER)}}).execute()
    if save:
        nbformat.write(book, path)
    return book


if __name__ == "__main__":
    for notebook in NOTEBOOKS:
        print(f"executing {notebook.name}", flush=True)
        execute(notebook, save="--save" in sys.argv)
