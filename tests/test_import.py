"""Importing tfasc changes nothing but what TF-MOT needs: no log level, no matplotlib backend or pyplot state."""

import os
import subprocess
import sys

SCRIPT = """
import os, sys
import tfasc, tfasc.layers, tfasc.models, tfasc.training.stages
from tfasc.report import plots
plots.plot_confusion([[2, 1], [0, 3]], ["a", "b"], __import__("pathlib").Path(sys.argv[1]), "title")
print(os.environ.get("TF_USE_LEGACY_KERAS"), os.environ.get("TF_CPP_MIN_LOG_LEVEL"), "matplotlib.pyplot" in sys.modules)
"""


def test_import_sets_only_the_legacy_keras_switch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS", "MPLBACKEND")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "c.png")], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-3:] == ["1", "None", "False"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
