"""End to end, as a user runs it: a real ``python -m gradleak.cli`` process prints one line, no traceback.

Two cases only (each process pays the import time); the in-process suites cover the rest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gradleak

SRC = str(Path(gradleak.__file__).resolve().parents[1])


CASES = {
    "option-word": (["attack", "--dataset", "digits", "--model", "lenet", "--attack", "idlg", "--option",
                     "iterations=abc", "--quiet", "--out", "out"], "iterations"),
    "plugin-exit-zero": (["audit", "--plugin", "plugin.py", "--quiet", "--out", "out"], "sys.exit(0)"),
}


def test_one_line_no_traceback_end_to_end(tmp_path):
    """Both processes run at once (their start-up dominates), each in its own directory."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    running = {}
    for name, (argv, _needle) in CASES.items():
        cwd = tmp_path / name
        cwd.mkdir()
        (cwd / "plugin.py").write_text("import sys\nsys.exit(0)\n")
        running[name] = subprocess.Popen([sys.executable, "-m", "gradleak.cli", *argv], cwd=cwd, env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, process in running.items():
        _out, err = process.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert process.returncode == 2, (name, err)
        assert "Traceback" not in err, (name, err)
        assert len(lines) == 1 and lines[0].startswith("gradleak: error:") and CASES[name][1] in lines[0], (name, err)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["plugin.py"], name
