"""A node process limits NumPy's BLAS to one thread before NumPy loads (perception_nodes.nodes),
unless the user chose a number: OpenBLAS's spinning workers next to ONNX Runtime's threads and
the other nodes' made the nodes' small matrix products a hundred times slower under load."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
import perception_nodes.nodes.detection_node  # what the detection_node executable imports first
import ctypes, glob, os, numpy
libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "*openblas*"))
threads = ctypes.CDLL(libs[0]).scipy_openblas_get_num_threads64_() if libs else -1
print(os.environ.get("OPENBLAS_NUM_THREADS"), threads)
"""


def _probe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_node_process_runs_numpy_blas_on_one_thread():
    setting, threads = _probe()
    assert setting == "1"
    if threads == "-1":
        print("NumPy ships no OpenBLAS here: only the environment is checked")
    else:
        assert threads == "1", "OpenBLAS was loaded before the limit was set"


def test_the_users_blas_threads_win():
    setting, threads = _probe(OPENBLAS_NUM_THREADS="2")
    assert setting == "2" and threads in ("2", "-1")
