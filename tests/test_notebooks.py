"""The committed notebooks run top to bottom against the current package."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "notebooks"))
from execute import NOTEBOOKS, execute  # noqa: E402

pytestmark = pytest.mark.slow  # see pytest.ini


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_executes(notebook):
    book = execute(notebook)  # raises CellExecutionError on any failing cell
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any(o.get("output_type") == "display_data" for o in outputs)  # plots were drawn


def test_committed_notebooks_carry_their_outputs():
    for notebook in NOTEBOOKS:
        text = notebook.read_text()
        assert '"output_type": "display_data"' in text, f"{notebook.name} has no outputs"
