"""Test-only helpers: render an HTML page with headless Chromium and measure what the screenshot
shows (the report's render check in test_eval_report.py; scripts/ensure_chromium.sh installs it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    import os
    import shutil

    return os.environ.get("PERCEPTION_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def screenshot(page: Path, png: Path, width: int = 1300, height: int = 8000, timeout: float = 120.0) -> Path:
    """Render ``page`` with headless Chromium (Debian's ``chromium`` package) into ``png``."""
    import subprocess
    import tempfile

    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set PERCEPTION_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="perception-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            Path(page).resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not Path(png).is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return Path(png)


def rendered_content(png: Path) -> dict[str, float]:
    """What a screenshot shows: the share of non-white pixels, and of colourful ones (photos and
    plots; text and tables are grey) — a page whose images failed to load has almost none."""
    import cv2

    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{png} is not an image")
    spread = img.max(axis=2).astype(np.int16) - img.min(axis=2)
    return {
        "height": float(img.shape[0]),
        "width": float(img.shape[1]),
        "non_white": float(np.mean(img.min(axis=2) < 240)),
        "colourful": float(np.mean(spread > 60)),
    }
