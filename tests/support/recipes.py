"""A tiny synthesized-data recipe for end-to-end tests: DCASE 2020 1B layout, 8 kHz mono, half-second
clips, a one-block baseline CNN, one epoch. Tests change what they exercise with ``--set`` style
overrides (``load_recipe(path, overrides)``) instead of copying the YAML."""

from __future__ import annotations

from pathlib import Path

TINY_RECIPE = """
stages: [train, export]
data:
  dataset: dcase2020_1b
  root: {root}
  synthesize: {{clips: 24, seed: 5, sample_rate: 8000, duration_s: 0.5, channels: 1}}
  sample_rate: 8000
  duration_s: 0.5
  channels: 1
  batch_size: 8
  cache_dir: {cache}
features: {{n_fft: 256, hop_length: 128, n_mels: 16}}
model: {{name: baseline_cnn, width: 4, blocks: 1}}
training: {{epochs: 1, learning_rate: 0.003}}
export: {{verify_examples: 2, smallest_arena: false}}
output: {{tensorboard: false, plots: false, dir: {runs}}}
"""
#: The tiny recipe's sample rate and its model input in samples (0.5 s).
RATE, WINDOW = 8000, 4000


def write_tiny_recipe(folder: Path, name: str = "tiny.yaml") -> Path:
    """Write the tiny recipe into ``folder`` (data, cache and runs beside it); its path."""
    folder = Path(folder)
    path = folder / name
    path.write_text(TINY_RECIPE.format(root=folder / "data", cache=folder / "cache", runs=folder / "runs"))
    return path
