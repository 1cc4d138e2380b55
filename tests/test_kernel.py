"""The `workbench` kernel: BLAS preloaded, and a start that prints nothing but what the notebook prints (no
"Kernel is running over TCP without encryption", no "KeyboardInterrupt caught in kernel" at shutdown)."""

import json
import logging
from pathlib import Path

import nbformat

from workbench import jupyter_kernel


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("IPKernelApp", level, __file__, 1, message, None, None)


def test_the_filter_drops_exactly_the_tcp_warning():
    keep = jupyter_kernel.DropTcpWarning().filter
    assert not keep(_record(logging.WARNING, jupyter_kernel.TCP_WARNING + ". All communication ..."))
    assert keep(_record(logging.WARNING, "some other warning"))
    assert keep(_record(logging.ERROR, jupyter_kernel.TCP_WARNING))
    assert not keep(_record(logging.ERROR, "KeyboardInterrupt caught in kernel."))  # jupyter_client's shutdown
    assert keep(_record(logging.ERROR, "Exception in message handler:"))


def test_kernel_runs_a_notebook_without_the_tcp_warning(tmp_path, monkeypatch, capfd):
    import papermill

    spec = json.loads((Path(jupyter_kernel.install_kernel(str(tmp_path))) / "kernel.json").read_text())
    assert spec["argv"][spec["argv"].index("-c") + 1] == jupyter_kernel.LAUNCH
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))  # this spec, not the shared one
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, sys\nprint(os.environ.get('LD_PRELOAD', 'none'), sys.argv[0])")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    for run in range(2):
        papermill.execute_notebook(
            str(tmp_path / "in.ipynb"), str(tmp_path / f"out{run}.ipynb"), kernel_name="workbench", progress_bar=False
        )
    err = capfd.readouterr().err
    assert "without encryption" not in err and "KeyboardInterrupt" not in err, err
    printed = "".join(json.loads((tmp_path / "out1.ipynb").read_text())["cells"][0]["outputs"][0]["text"])
    assert printed.split()[0] == (jupyter_kernel.kernel_env().get("LD_PRELOAD") or "none"), printed
