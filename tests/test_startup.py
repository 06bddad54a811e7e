"""Start-up (issue #18, item 1): help answers without torch; listing skips what it does not list.

Checked by which modules got imported, not by seconds, so a busy machine cannot fail it; the
seconds live in benchmarks/cli_startup.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from gradleak.cli import command_modules


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\nfrom gradleak.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stderr.split())


@pytest.mark.parametrize("args", [["--help"], *[[name, "--help"] for name in (
    "attack", "observe", "attacks", "datasets", "models", *command_modules())]])
def test_help_does_not_import_torch(args: list[str]) -> None:
    assert "torch" not in _modules_after(args)


def test_listing_attacks_skips_scipy_and_the_audit() -> None:
    loaded = _modules_after(["attacks"])
    assert "gradleak.attacks" in loaded
    assert not {"scipy.optimize", "scipy.linalg", "scipy.stats", "gradleak.audit.run"} & loaded
