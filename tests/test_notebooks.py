"""The notebooks in notebooks/ run from top to bottom, and are committed without outputs.

Each notebook is executed with nbclient in a kernel of *this* interpreter: the
test writes a kernelspec pointing at ``sys.executable`` into a temporary
``JUPYTER_PATH``, so a ``python3`` kernel installed elsewhere on the machine
can never be picked by mistake. 01 and 02 talk to the session's embedded
server (through ``BOTRIX_REDIS_URL``, as a user's environment would); 03 must
need no server at all, so it runs with ``BOTRIX_REDIS_URL`` pointing at a port
where nothing listens: any connection it tried would fail the cell. 04 reads a
history folder the test makes (``BOTRIX_HISTORY_DIR``), also with no server.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from botrix_toolkit.server.embedded import EmbeddedServer
from botrix_toolkit.server.ports import free_port, port_is_free

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ("01_queue_overview.ipynb", "02_event_analysis.ipynb", "03_offline_history.ipynb",
            "04_history.ipynb")
NEEDS_SERVER = {"01_queue_overview.ipynb": True, "02_event_analysis.ipynb": True,
                "03_offline_history.ipynb": False, "04_history.ipynb": False}
KERNEL_NAME = "botrix-test-python"
CELL_TIMEOUT_S = 180
# The stand-in secret notebook 01 stores in its jobs: it must never reach an output.
DEMO_PASSWORD = "demo-secret-42"


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec that runs ipykernel in this interpreter, found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "botrix tests (this interpreter)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        yield KERNEL_NAME


def _execute(path: Path, kernel: str) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` (cwd: its folder); raises on any cell error."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return notebook


def _output_text(notebook: nbformat.NotebookNode) -> str:
    """Every output of every code cell, as one JSON text."""
    return json.dumps([cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"])


def test_the_four_notebooks_are_there() -> None:
    found = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")))
def test_notebook_is_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, f"{name} has no code cells"
    dirty = [index for index, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{name}: cells {dirty} have outputs or execution counts; strip them "
                       "(e.g. `jupyter nbconvert --clear-output --inplace`) before committing")
    assert notebook.cells[0].cell_type == "markdown", f"{name} must open with a markdown explanation"


def test_kernel_runs_this_interpreter(kernel_name: str, tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    path = tmp_path / "which.ipynb"
    nbformat.write(notebook, path)
    executed = _execute(path, kernel_name)
    assert executed.cells[0].outputs[0]["text"].strip() == sys.executable


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs(
    name: str, kernel_name: str, embedded_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    if NEEDS_SERVER[name]:
        assert embedded_server.url is not None
        monkeypatch.setenv("BOTRIX_REDIS_URL", embedded_server.url)
    else:
        closed = free_port()
        assert port_is_free(closed)
        monkeypatch.setenv("BOTRIX_REDIS_URL", f"redis://127.0.0.1:{closed}/0")

    if name == "04_history.ipynb":
        history, completed_per_hour = _small_history(tmp_path)
        monkeypatch.setenv("BOTRIX_HISTORY_DIR", str(history))

    executed = _execute(NOTEBOOK_DIR / name, kernel_name)

    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code_cells), "a cell did not run"
    text = _output_text(executed)
    assert '"output_type": "error"' not in text
    assert DEMO_PASSWORD not in text, f"{name} shows a job's password in its outputs"
    # Every notebook draws at least one figure from botrix_toolkit.plots.
    assert "application/vnd.plotly.v1+json" in text, f"{name} drew no plotly figure"
    if name == "04_history.ipynb":
        # DuckDB and Polars, querying the folder directly, count what the test wrote (and agree with pandas).
        agreed = re.search(r"DuckDB, Polars and pandas agree: (\d+) completions in (\d+) queue-hours", text)
        assert agreed, "04 printed no DuckDB/Polars/pandas agreement"
        assert (int(agreed[1]), int(agreed[2])) == (sum(completed_per_hour.values()), len(completed_per_hour))


def _small_history(folder: Path) -> tuple[Path, dict[tuple[str, pd.Timestamp], int]]:
    """A history folder of two queues, one of them over two hours, as ``botrix monitor`` writes it,
    and its ``job_completed`` events per (queue, UTC hour), counted from the frames written."""
    import dataclasses

    from botrix_toolkit.frames.events import EventRecorder
    from botrix_toolkit.monitor.backfill import write_recording

    history = folder / "history"
    sample = EventRecorder.load(NOTEBOOK_DIR.parent / "data" / "samples" / "events.parquet")
    completed: Counter[tuple[str, pd.Timestamp]] = Counter()
    for shift_h, prefix in ((0, "botrix:jobs"), (1, "botrix:jobs"), (0, "{reports}")):
        shifted = sample.events.assign(received_at=sample.events["received_at"] + pd.Timedelta(hours=shift_h))
        write_recording(dataclasses.replace(sample, events=shifted), history, prefix)
        hours = shifted.loc[shifted["event"] == "job_completed", "received_at"].dt.floor("h")
        completed.update({(prefix, hour): count for hour, count in hours.value_counts().items()})
    return history, dict(completed)
