"""The dbt project (``dbt_project/`` at the repository root) as dagster-dbt sees it.

Prepare its manifest before loading the code location outside ``dagster dev``::

    dagster-dbt project prepare-and-package --file aios_pipelines/defs/analytics/dbt_project.py

(``make demo``, ``make test`` and ``make dev`` do this first). This module is light on
purpose: the prepare command imports it on its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from aios_pipelines.settings import PROJECT_ROOT, aios_paths

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
WAREHOUSE_PATH_ENV = "AIOS_WAREHOUSE_PATH"

# dbt is installed beside this interpreter; dagster-dbt's own invocations (prepare, and
# `dagster dev`'s prepare_if_dev) look it up on PATH, which an un-activated venv lacks.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")]).rstrip(os.pathsep)

# profiles.yml requires the warehouse path; parsing needs a value too. Runs override it with
# the warehouse resource's path (see resources.py in this folder).
os.environ.setdefault(WAREHOUSE_PATH_ENV, str(aios_paths().warehouse))

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)


def dbt_target_dir(project: DbtProject = dbt_project) -> Path:
    """Where dagster-dbt puts each build's artifacts folder, and where one build leaves its
    parse for the next: ``$DBT_TARGET_PATH`` (relative to the project), else ``target``."""
    path = Path(os.environ.get("DBT_TARGET_PATH", "target"))
    return path if path.is_absolute() else project.project_dir / path


# what `dbt parse` reads (target/ and logs/ are what it writes)
PROJECT_SOURCE_FOLDERS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
PROJECT_SOURCE_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")


def manifest_is_stale(project: DbtProject = dbt_project) -> bool:
    """No manifest, or a project, model, test or macro file changed after it was written."""
    if not project.manifest_path.exists():
        return True
    written = project.manifest_path.stat().st_mtime
    sources = [project.project_dir / name for name in PROJECT_SOURCE_FILES]
    for folder in PROJECT_SOURCE_FOLDERS:
        sources.extend(p for p in (project.project_dir / folder).rglob("*") if p.is_file())
    return any(path.exists() and path.stat().st_mtime > written for path in sources)


def ensure_manifest(project: DbtProject = dbt_project) -> Path:
    """The manifest path. Parses the project first under ``dagster dev``, and whenever the
    manifest is missing or older than the project's files (a fresh checkout, an edited
    model), so the assets always match the SQL that `dbt build` will run."""
    project.prepare_if_dev()
    if manifest_is_stale(project):
        project.preparer.prepare(project)
    return project.manifest_path
