"""``python -m tfasc.predict RUN_DIR AUDIO... [--float] [--hop SECONDS] [--csv OUT.csv] [--json OUT.json]``:
classify new audio files (or folders of them) with a trained run.

Prints one line per file, ``path<TAB>label<TAB>score`` (the label's probability), and optionally
writes every class's score as CSV / JSON. By default the run's int8 model (``deploy/model_int8.tflite``)
runs in the TensorFlow Lite Micro interpreter, as the device would run it; ``--float`` uses the
run's newest float Keras model instead. A clip longer than the model's input is classified by
sliding windows (``--hop``, default half the window) whose scores are averaged. With
``features.segment_frames`` each window's features are cut into segments like training's and the
window's scores are the mean of its segments' (:func:`tfasc.evaluate.clip_probabilities`).
Scores are softmax probabilities, or per-class sigmoids (multi-label runs, and runs trained with
``training.loss.name: binary_crossentropy``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

import tfasc  # noqa: F401  (environment for TensorFlow before it loads)

#: Extensions of the audio files found inside folders (a file named explicitly is read whatever its name).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
#: Windows go through the front-end graph this many at a time, as clips do in training
#: (``tfasc.data.pipeline``): bounded memory for hour-long recordings.
WINDOW_BATCH = 8


# -- what to classify ---------------------------------------------------------------------------


def audio_files(paths: Iterable[Path | str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to classify and ``(path, reason)`` of each argument that names none.

    A folder stands for the audio files inside it (recursively, sorted, by extension, case
    ignored); a file is taken as named, so a recording with an unusual extension can still be
    classified. Arguments keep their order, so the output follows the command line.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if found:
                files.extend(found)
            else:
                problems.append((str(path), f"folder holds no audio files ({' '.join(AUDIO_EXTENSIONS)})"))
        elif path.exists():
            files.append(path)
        else:
            problems.append((str(path), "no such file or folder"))
    return files, problems


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """First sample of each window of ``window`` samples over a clip of ``num_samples``, ``hop`` apart.

    A clip no longer than the window is one window (zero-padded at the end, as training pads short
    clips). When the hop does not end exactly on the clip's end, one last window is aligned with
    the end so the tail is classified from real audio rather than from padding.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window={window}, hop={hop}: expected positive numbers of samples")
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def hop_samples(hop_s: float | None, *, window: int, sample_rate: int) -> int:
    """``--hop`` in samples: half the window by default; more than the window would skip audio."""
    if hop_s is None:
        return max(1, window // 2)
    hop = int(round(hop_s * sample_rate))
    if not 1 <= hop <= window:
        from tfasc.errors import UserError

        raise UserError(f"--hop {hop_s}: expected seconds above 0 and at most the model's window of "
                        f"{window / sample_rate:g} s (at {sample_rate} Hz)")
    return hop


# -- the run's model and input path --------------------------------------------------------------


@dataclass(frozen=True)
class Classifier:
    """A run's model with the input path it was trained on: clip format, front-end, standardization."""

    run_dir: Path
    model: str
    """``"int8"`` (TFLite Micro) or ``"float"`` (Keras)."""
    classes: tuple[str, ...]
    multi_label: bool
    sigmoid: bool
    """Probabilities are per-class sigmoids, else a softmax (:func:`tfasc.metrics.sigmoid_outputs`)."""
    sample_rate: int
    channels: int
    window: int
    """Samples per clip-sized window (``data.duration_s`` at ``data.sample_rate``)."""
    segments_per_window: int
    """Model inputs per window: its segments with ``features.segment_frames``, else 1."""
    features: Callable[[np.ndarray], np.ndarray]
    """``[n, window, channels]`` clips -> normalized model inputs ``[n * segments_per_window, ...]``
    (float32), a window's segments consecutive."""
    logits: Callable[[np.ndarray], np.ndarray]
    """Model inputs ``[n, ...]`` -> float logits ``[n, classes]``."""


def _run_error(message: str):
    from tfasc.training.rundir import RunDirError

    return RunDirError(message)


def run_labels(run_dir: Path) -> tuple[tuple[str, ...], bool]:
    """Class names in output order and whether the run is multi-label, from its ``report.json``.

    The run directory records them nowhere else in a readable form: the report's ``data.classes``
    is the dataset index's list, and a multi-label run's metrics are ``mAP`` instead of accuracy.
    """
    from tfasc.training.rundir import REPORT_FILE, read_run_json

    path = run_dir / REPORT_FILE
    report = read_run_json(path, "class names")
    classes = (report.get("data") or {}).get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _run_error(f"{path}: damaged (no list of class names under data.classes)")
    return tuple(classes), "mAP" in (report.get("metrics") or {})


def _feature_function(recipe, window: int, normalize: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """Training's input path for clips of ``window`` samples: the same traced front-end graph, the
    rounding of the feature cache training read its inputs from (when it cached), the segments
    (``features.segment_frames``), the normalization (of each segment)."""
    from tfasc.data.pipeline import feature_function
    from tfasc.data.prepare import frontend_of
    from tfasc.data.segments import segmented

    frontend = frontend_of(recipe)
    stored = np.dtype(frontend.cache_dtype) if recipe.data.cache else np.dtype(np.float32)
    extract = feature_function(frontend, recipe.data.sample_rate, window, recipe.data.channels)

    def features(clips: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to the cache dtype is caught by the caller
            values = np.asarray(extract(np.asarray(clips, np.float32)).numpy(), dtype=stored)
        return normalize(segmented(values, recipe.features.segment_frames)[:])

    return features


def _check_io(model_path: Path, inputs: Sequence[int], outputs: int, expected_shape: tuple[int, ...],
              classes: Sequence[str]) -> None:
    """The model must take what the recipe's input path makes and give one output per class of the report."""
    from tfasc.layers.contract import accepts_shape

    # A model that takes any length (None, e.g. aclnet) takes the recipe's windows too.
    if not accepts_shape(tuple(inputs), expected_shape):
        raise _run_error(f"{model_path}: takes inputs {list(inputs)}, but the run's recipe makes "
                         f"{list(expected_shape)}")
    if outputs != len(classes):
        raise _run_error(f"{model_path}: gives {outputs} outputs, but the run's report names {len(classes)} classes")


def _int8_logits(run_dir: Path, expected_shape: tuple[int, ...], classes: Sequence[str]) -> Callable:
    """The bundle's int8 model in TFLite Micro, called like a float model: inputs quantized with the
    model's input scale / zero point, outputs dequantized (as the export's verification does)."""
    from tfasc.deploy.bundle import MODEL_FILE
    from tfasc.deploy.convert import io_quantization
    from tfasc.deploy.tflm import run_tflm
    from tfasc.training.rundir import Manifest

    manifest = Manifest(run_dir)
    if manifest.newest("bundle") is None:
        raise _run_error(f"{run_dir}: has no int8 export; run python -m tfasc.export {run_dir} first, or use --float")
    bundle = manifest.require("bundle", by="predict")
    tflite = (bundle / MODEL_FILE).read_bytes()
    input_q, output_q = io_quantization(tflite)
    _check_io(bundle / MODEL_FILE, input_q.shape[1:], output_q.shape[-1], expected_shape, classes)
    return lambda inputs: output_q.dequantize(run_tflm(tflite, input_q.quantize(inputs)))


def _float_logits(run_dir: Path, expected_shape: tuple[int, ...], classes: Sequence[str]) -> Callable:
    """The run's newest float Keras model, loaded without running code from the file."""
    from tfasc.models.saving import load_model
    from tfasc.training.context import FLOAT_MODEL
    from tfasc.training.rundir import Manifest

    path = Manifest(run_dir).require(FLOAT_MODEL, by="predict")
    model = load_model(path)
    _check_io(path, model.input_shape[1:], model.output_shape[-1], expected_shape, classes)
    return lambda inputs: model.predict(inputs, verbose=0, batch_size=64)


def load_classifier(run_dir: Path | str, *, use_float: bool = False) -> Classifier:
    """The run's int8 (or float) model with its recipe's clip format, front-end and standardization.

    Raises:
        RunDirError: ``run_dir`` is no run, or the model it needs is missing or changed since recorded.
    """
    from tfasc.config import load_recipe
    from tfasc.data.prepare import frontend_of
    from tfasc.data.segments import segment_shape, segments_per_clip
    from tfasc.metrics import sigmoid_outputs
    from tfasc.training.rundir import NORMALIZATION_FILE, RECIPE_FILE, read_normalization

    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise _run_error(f"{run_dir}: not a tfasc run directory (no {RECIPE_FILE})")
    recipe = load_recipe(run_dir / RECIPE_FILE)
    normalization = read_normalization(run_dir / NORMALIZATION_FILE)
    classes, multi_label = run_labels(run_dir)
    data = recipe.data
    window = int(round(data.sample_rate * data.duration_s))
    clip_shape = tuple(frontend_of(recipe).output_shape(window, data.channels))
    segment_frames = recipe.features.segment_frames
    shape = segment_shape(clip_shape, segment_frames)
    logits = (_float_logits if use_float else _int8_logits)(run_dir, shape, classes)
    return Classifier(
        run_dir=run_dir, model="float" if use_float else "int8", classes=classes, multi_label=multi_label,
        sigmoid=sigmoid_outputs(recipe.training.loss.name, multi_label=multi_label),
        sample_rate=data.sample_rate, channels=data.channels, window=window,
        segments_per_window=segments_per_clip(clip_shape, segment_frames),
        features=_feature_function(recipe, window, normalization), logits=logits,
    )


# -- classifying one file -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    path: str
    scores: np.ndarray
    """``[classes]`` probabilities (softmax, or sigmoid per class: ``Classifier.sigmoid``), averaged over
    windows (each the mean of its segments')."""
    windows: int

    @property
    def best(self) -> int:
        return int(np.argmax(self.scores))


def decode_clip(path: Path | str, *, sample_rate: int, channels: int) -> np.ndarray:
    """``[samples, channels]`` float32 at ``sample_rate``: training's decode, resampling and channel
    conversion (:func:`tfasc.data.audio.load_audio`) without its crop, so every window is seen."""
    from tfasc.data.audio import load_audio

    return load_audio(path, sample_rate=sample_rate, channels=channels, num_samples=None)


def clip_windows(audio: np.ndarray, *, window: int, hop: int) -> np.ndarray:
    """``[n, window, channels]`` windows of ``[samples, channels]`` audio (see :func:`window_starts`),
    each cut or zero-padded by training's :func:`tfasc.data.audio.fit_length`."""
    from tfasc.data.audio import fit_length

    return np.stack([fit_length(audio[start:start + window], window).numpy()
                     for start in window_starts(len(audio), window, hop)])


def classify_file(classifier: Classifier, path: Path | str, *, hop: int) -> Prediction:
    """Class probabilities of one file, averaged over its windows (each window scored like an
    evaluation clip: the mean of its segments' probabilities with ``features.segment_frames``).

    Raises:
        AudioDecodeError: the file cannot be read or decoded, or its features are not finite.
    """
    from tfasc.data.audio import AudioDecodeError, count_non_finite
    from tfasc.evaluate import clip_probabilities
    from tfasc.metrics import probabilities_from_logits

    audio = decode_clip(path, sample_rate=classifier.sample_rate, channels=classifier.channels)
    windows = clip_windows(audio, window=classifier.window, hop=hop)
    scores = []
    for start in range(0, len(windows), WINDOW_BATCH):
        inputs = classifier.features(windows[start:start + WINDOW_BATCH])
        bad = count_non_finite(inputs)
        if bad:
            raise AudioDecodeError(path, f"features are not finite ({bad} NaN/inf values)")
        scores.append(clip_probabilities(
            lambda x: probabilities_from_logits(classifier.logits(x), sigmoid=classifier.sigmoid),
            inputs, classifier.segments_per_window))
    return Prediction(path=str(path), scores=np.concatenate(scores).mean(axis=0), windows=len(windows))


def predict(run_dir: Path | str, audio: Sequence[Path | str], *, use_float: bool = False,
            hop_s: float | None = None) -> tuple[Classifier, list[Prediction], list[tuple[str, str]]]:
    """Classify every file of ``audio`` (files or folders); also returns ``(path, reason)`` of each
    file that could not be classified, so one bad file does not cost the others their result.

    Raises:
        UserError: the run cannot be used (see :func:`load_classifier`) or ``hop_s`` does not fit.
    """
    from tfasc.data.audio import AudioDecodeError

    classifier = load_classifier(run_dir, use_float=use_float)
    hop = hop_samples(hop_s, window=classifier.window, sample_rate=classifier.sample_rate)
    files, failures = audio_files(audio)
    predictions = []
    for path in files:
        try:
            predictions.append(classify_file(classifier, path, hop=hop))
        except AudioDecodeError as error:
            failures.append((str(path), error.reason))
    return classifier, predictions, failures


# -- output -------------------------------------------------------------------------------------


def result_line(prediction: Prediction, classes: Sequence[str]) -> str:
    return f"{prediction.path}\t{classes[prediction.best]}\t{prediction.scores[prediction.best]:.4f}"


def csv_text(predictions: Sequence[Prediction], classes: Sequence[str]) -> str:
    """``path,label,score,<one column per class>``; scores at full precision."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "score", *classes])
    for p in predictions:
        writer.writerow([p.path, classes[p.best], repr(float(p.scores[p.best])), *(repr(float(s)) for s in p.scores)])
    return out.getvalue()


def json_text(classifier: Classifier, predictions: Sequence[Prediction], failures: Sequence[tuple[str, str]],
              *, hop: int) -> str:
    """Every file's class scores, what produced them and which files failed."""
    classes = classifier.classes
    document = {
        "run_dir": str(classifier.run_dir),
        "model": classifier.model,
        "classes": list(classes),
        "multi_label": classifier.multi_label,
        "outputs": "sigmoid" if classifier.sigmoid else "softmax",
        "segments_per_window": classifier.segments_per_window,
        "window_s": classifier.window / classifier.sample_rate,
        "hop_s": hop / classifier.sample_rate,
        "predictions": [
            {"path": p.path, "label": classes[p.best], "score": float(p.scores[p.best]), "windows": p.windows,
             "scores": {name: float(s) for name, s in zip(classes, p.scores)}}
            for p in predictions
        ],
        "failures": [{"path": path, "reason": reason} for path, reason in failures],
    }
    return json.dumps(document, indent=2) + "\n"


def failure_message(failures: Sequence[tuple[str, str]]) -> str:
    """One line per failed file; :func:`tfasc.cli.run_command` puts ``error:`` before the first."""
    return "\nerror: ".join(f"{path}: {reason}" for path, reason in failures)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfasc.predict", description=__doc__.split("\n\n")[1])
    parser.add_argument("run_dir", help="a run directory written by python -m tfasc.train")
    parser.add_argument("audio", nargs="+",
                        help=f"audio files, or folders searched recursively for {' '.join(AUDIO_EXTENSIONS)} files")
    parser.add_argument("--float", dest="use_float", action="store_true",
                        help="use the run's newest float Keras model instead of the int8 model in TFLite Micro")
    parser.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                        help="hop between the windows of clips longer than the model's input (default: half its length)")
    parser.add_argument("--csv", type=Path, default=None, metavar="OUT.csv", help="also write every class's score as CSV")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="also write every class's score as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tfasc.cli import quiet_tensorflow, run_command

    quiet_tensorflow()  # before TensorFlow loads

    def classify() -> str:
        from tfasc.errors import UserError
        from tfasc.files import write_atomic

        classifier, predictions, failures = predict(args.run_dir, args.audio, use_float=args.use_float, hop_s=args.hop)
        hop = hop_samples(args.hop, window=classifier.window, sample_rate=classifier.sample_rate)
        if args.csv:
            write_atomic(args.csv, csv_text(predictions, classifier.classes))
        if args.json:
            write_atomic(args.json, json_text(classifier, predictions, failures, hop=hop))
        lines = "\n".join(result_line(p, classifier.classes) for p in predictions)
        if failures:
            if lines:
                print(lines, flush=True)  # the files that worked keep their result
            raise UserError(failure_message(failures))
        return lines

    return run_command(classify)


if __name__ == "__main__":
    sys.exit(main())
