"""Compile a bundle's ``input_path.h`` into a host program (gcc) that turns float features read from
stdin into the int8 inputs it writes to stdout, one clip after another."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

MAIN_C = """#include <stdio.h>
#include "input_path.h"
int main(void) {
  static float x[kTfascInputValues];
  static int8_t q[kTfascInputValues];
  while (fread(x, sizeof(float), kTfascInputValues, stdin) == (size_t)kTfascInputValues) {
    tfasc_features_to_input(x, q);
    fwrite(q, 1, kTfascInputValues, stdout);
  }
  return 0;
}
"""


def build(include_dir: Path, work_dir: Path) -> Path:
    """The program for ``include_dir/input_path.h``; warnings are errors. ``-ffp-contract=off``: no
    fused multiply-add, like a Cortex-M4F build without ``-ffast-math``."""
    source = Path(work_dir) / "input_path_main.c"
    source.write_text(MAIN_C)
    binary = Path(work_dir) / "input_path"
    subprocess.run(["gcc", "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Werror", "-I", str(include_dir),
                    str(source), "-o", str(binary), "-lm"], check=True)
    return binary


def run(binary: Path, features: np.ndarray) -> np.ndarray:
    """int8 inputs ``[n, ...]`` of float ``features [n, ...]``."""
    out = subprocess.run([str(binary)], input=np.asarray(features, "<f4").tobytes(), capture_output=True,
                         check=True).stdout
    return np.frombuffer(out, np.int8).reshape(features.shape)
