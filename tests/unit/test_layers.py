"""The import contracts of pyproject.toml (docs/architecture.md, "The layers") hold for the code as it is,
and break when a module imports upward: each case runs `lint-imports` over a copy of the source with one
import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
LAYERS = "Layers: shells, services, workers and stand-ins, router, costs, foundation"
NO_WEB = "Only the shells speak HTTP server and command line"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, ahead of the editable install of the real tree.
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and of the contracts."""
    for folder in ("src", "mocks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(tree: Path, module: str, statement: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{statement}\n")


def test_the_code_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract", "reported"),
    [
        # The foundation reaching up to the runtime the workers compose.
        (
            "src/ingest/store/jobs.py",
            "import workers.runtime",
            LAYERS,
            "ingest.store.jobs -> workers.runtime",
        ),
        # Costs reaching up to the router (the router uses costs, not the other way round).
        ("src/costs/estimate.py", "from router import decide", LAYERS, "costs.estimate -> router.decide"),
        # A service reaching up to a shell, even from inside a function.
        (
            "src/ingest/services/search.py",
            "def _shell() -> None:\n    import ingest.api.app",
            LAYERS,
            "ingest.services.search -> ingest.api.app",
        ),
        # The workers reaching sideways into the vendor stand-ins.
        ("src/workers/parse_stage.py", "import mocks.server", LAYERS, "workers.parse_stage -> mocks.server"),
        # The web framework below the shells.
        ("src/router/decide.py", "import fastapi", NO_WEB, "router.decide -> fastapi"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tree: Path, module: str, statement: str, contract: str, reported: str
) -> None:
    add_import(tree, module, statement)
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and reported in broken, result.stdout
