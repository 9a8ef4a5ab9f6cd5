"""Where the workspace's config/, launch/ and models live, for source and installed layouts.

Order: ``$PERCEPTION_ROOT``; the directory above ``src/`` of this source file (colcon
--symlink-install and plain checkouts); the current directory if it has ``config/profiles``.
"""

from __future__ import annotations

import os
from pathlib import Path


def workspace_root() -> Path:
    env = os.environ.get("PERCEPTION_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "config" / "profiles").is_dir() and (parent / "src").is_dir():
            return parent
    cwd = Path.cwd()
    if (cwd / "config" / "profiles").is_dir():
        return cwd
    raise FileNotFoundError(
        "cannot find the perception workspace (a folder with config/profiles and src/); set PERCEPTION_ROOT"
    )


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Absolute paths and ~ as given; relative ones against the workspace root."""
    p = Path(os.path.expandvars(str(path))).expanduser()
    if p.is_absolute():
        return p
    try:
        return workspace_root() / p
    except FileNotFoundError:
        return p.resolve()
