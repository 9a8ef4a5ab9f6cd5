"""Where the stack's files are: the installed package share, a source checkout, and the work folder.

- :func:`share_dir`: ``<prefix>/share/perception_nodes`` of an install (``colcon build``, the
  container images, a robot's workspace): ``launch/``, ``config/`` (parameter files, profiles,
  cameras, class maps, the Fast DDS profile), ``rviz/`` and ``models/`` are installed there
  (``setup.py`` data_files), so ``ros2 launch perception_nodes perception.launch.py`` works from
  any directory.
- :func:`source_root`: ``$PERCEPTION_ROOT``, else the checkout above ``src/`` of this file (colcon
  --symlink-install and plain checkouts): the development fallback, searched first so that a file
  edited in the checkout wins over its installed copy.
- :func:`workspace_root`: where work files go (``cache/``, ``out/``): the source root, else the
  current directory.

:func:`resolve_path` resolves a relative path (``models/detection.onnx``, ``config/cameras/x.yaml``)
against the source root, then the share; a path found in neither (a file to write) is taken
relative to the workspace root.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "perception_nodes"


def _prefixes() -> list[Path]:
    """Install prefixes: the one this module is installed in (``<prefix>/lib/pythonX.Y/site-packages/
    perception_nodes/workspace.py``), then AMENT_PREFIX_PATH's."""
    out = []
    here = Path(__file__).absolute()  # not resolved: a symlink install's link sits in the prefix
    if len(here.parents) > 4 and here.parents[2].name == "site-packages":
        out.append(here.parents[4])
    return out + [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]


def share_dir() -> Path | None:
    """The installed share folder that holds config/profiles (None when not installed)."""
    for prefix in _prefixes():
        share = prefix / "share" / PACKAGE
        if (share / "config" / "profiles").is_dir():
            return share
    return None


def source_root() -> Path | None:
    env = os.environ.get("PERCEPTION_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "config" / "profiles").is_dir() and (parent / "src").is_dir():
            return parent
    return None


def search_roots() -> list[Path]:
    """Where shipped files are looked for, in order: the source root, the installed share, and a
    current directory that has config/profiles."""
    roots = [r for r in (source_root(), share_dir()) if r is not None]
    cwd = Path.cwd()
    if (cwd / "config" / "profiles").is_dir():
        roots.append(cwd)
    if not roots:
        raise FileNotFoundError(
            "cannot find the perception stack's files: install the package (colcon build), set "
            "PERCEPTION_ROOT to a checkout, or run from one"
        )
    return list(dict.fromkeys(roots))


def workspace_root() -> Path:
    """The source root when there is one (development), else the current directory: where work
    files (cache/, out/) go."""
    return source_root() or Path.cwd()


def shared_path(relative: str | os.PathLike[str]) -> Path:
    """A shipped file or folder (``config/profiles``, ``launch/perception.launch.py``): the first
    search root that has it, else where the first root would have it."""
    roots = search_roots()
    for root in roots:
        if (root / relative).exists():
            return root / relative
    return roots[0] / relative


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Absolute paths and ~ as given; relative ones against the search roots (see the module), else
    against the workspace root."""
    p = Path(os.path.expandvars(str(path))).expanduser()
    if p.is_absolute():
        return p
    try:
        roots = search_roots()
    except FileNotFoundError:
        roots = []
    for root in roots:
        if (root / p).exists():
            return root / p
    return workspace_root() / p
