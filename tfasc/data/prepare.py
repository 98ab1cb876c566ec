"""From a recipe's ``data`` and ``features`` sections to model inputs and targets of both splits.

The dataset root (synthesized first when the recipe asks), its index, the front-end's inputs of the
training and evaluation splits and of each held-out group (cached on disk), the decoded training
clips when the recipe augments waveforms, their targets and the input normalization. Everything
downstream (stages, export, report) reads :class:`PreparedData`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfasc.config.load import RecipeError
from tfasc.data import datasets, frontends
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError
from tfasc.data.frontends import FrontEnd
from tfasc.data.normalization import Normalization, fit_normalization
from tfasc.data.pipeline import FeatureSet, extract_features, label_targets
from tfasc.data.segments import segment_shape, segmented, segments_per_clip
from tfasc.log import log
from tfasc.metrics import sigmoid_outputs


@dataclass(frozen=True)
class HeldOutGroup:
    """One held-out group's clips: rows of the evaluation split, plus clips in no split.

    Clips already in the evaluation split reuse its features (and predictions) instead of being
    decoded and scored a second time.
    """

    eval_rows: np.ndarray
    """Indices into the evaluation split's features of this group's clips."""
    extra: FeatureSet | None
    """Features of this group's clips outside both splits (None when there are none)."""
    extra_targets: np.ndarray | None

    @property
    def examples(self) -> int:
        return len(self.eval_rows) + (len(self.extra.examples) if self.extra is not None else 0)


@dataclass(frozen=True)
class PreparedData:
    """Features and targets of both splits, ready for ``make_dataset``.

    ``train``, ``eval`` and the held-out groups hold whole clips (as cached), and their targets are
    per clip. The model's inputs are :meth:`inputs` of them: the clips themselves, or with
    ``features.segment_frames`` their segments (:mod:`tfasc.data.segments`), each with its clip's
    target (:meth:`input_targets`).
    """

    index: DatasetIndex
    train: FeatureSet
    eval: FeatureSet
    held_out: dict[str, HeldOutGroup]
    """Group name → that group's clips outside the training split."""
    train_targets: np.ndarray
    eval_targets: np.ndarray
    normalization: Normalization
    """Fitted on the training split's model inputs (its segments, with ``segment_frames``;
    :mod:`tfasc.data.normalization`)."""
    train_clips: FeatureSet | None = None
    """The training split's decoded clips ``[examples, samples, channels]``, in the order of ``train``,
    when the recipe augments waveforms before the front-end (``augment.waveform``); else None."""
    segment_frames: int | None = None
    """``features.segment_frames``: every model input is a segment of this many frames of a clip
    (None: the whole clip)."""
    sigmoid_outputs: bool = False
    """Whether the model's outputs are per-class sigmoids, else a softmax (:func:`tfasc.metrics.sigmoid_outputs`)."""
    clip_seconds: float | None = None
    """``data.duration_s``: the audio of one clip."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One model input: a clip's features, or one segment of them."""
        return segment_shape(self.train.features.shape[1:], self.segment_frames)

    @property
    def segments_per_clip(self) -> int:
        """Model inputs per clip (1 without ``segment_frames``)."""
        return segments_per_clip(self.train.features.shape[1:], self.segment_frames)

    @property
    def training_inputs(self) -> int:
        """Model inputs of the training split: its clips, or their segments."""
        return len(self.train_targets) * self.segments_per_clip

    @property
    def input_seconds(self) -> float | None:
        """The audio one model input accounts for: a clip's seconds over its segments (the device runs
        ``segments_per_clip`` inferences per clip), for costs per second of audio."""
        return None if self.clip_seconds is None else self.clip_seconds / self.segments_per_clip

    def inputs(self, features):
        """The raw (not yet normalized) model inputs of clip features ``[clips, ...]``: the features
        themselves, or their lazy :class:`tfasc.data.segments.Segments`, a clip's segments consecutive."""
        return segmented(features, self.segment_frames)

    def input_targets(self, targets: np.ndarray) -> np.ndarray:
        """Per-clip ``targets`` repeated for each of the clip's model inputs (row for row with :meth:`inputs`)."""
        return targets if self.segment_frames is None else np.repeat(targets, self.segments_per_clip, axis=0)


def ensure_dataset(recipe) -> Path:
    """The dataset root, synthesized first when absent and the recipe asks for it."""
    root = Path(recipe.data.root)
    if root.exists():
        return root
    synth = recipe.data.synthesize
    if synth.clips == 0:
        raise DatasetError(
            f"data.root: {root} does not exist. Point data.root at the dataset, or set data.synthesize.clips "
            "to generate a small DCASE-layout dataset there."
        )
    if recipe.data.dataset != "dcase2020_1b":
        raise RecipeError(f"data.synthesize: only the dcase2020_1b layout can be synthesized, not {recipe.data.dataset!r}")
    from tfasc.data.synthesize import synthesize_dcase2020_1b

    log(f"synthesizing {synth.clips} clips in the DCASE 2020 1B layout at {root}")
    synthesize_dcase2020_1b(
        root, clips=synth.clips, seed=synth.seed, sample_rate=synth.sample_rate,
        duration_s=synth.duration_s, channels=synth.channels,
    )
    return root


def frontend_of(recipe) -> FrontEnd:
    """The front-end the recipe's ``features`` section selects (``features.kind``)."""
    return frontends.make(recipe.features.kind, recipe.features)


def _features(recipe, examples, description: str, *, started: float | None = None,
              frontend: FrontEnd | None = None) -> FeatureSet:
    """``started``: when this data preparation began; the cache cap spares entries used since.
    ``frontend``: default the recipe's."""
    data = recipe.data
    result = extract_features(
        examples,
        sample_rate=data.sample_rate,
        duration_s=data.duration_s,
        channels=data.channels,
        frontend=frontend or frontend_of(recipe),
        cache_dir=Path(data.cache_dir) if data.cache else None,
        skip_bad_files=data.skip_bad_files,
        description=description,
        cache_max_bytes=int(data.cache_max_gb * 1e9) if data.cache else None,
        cache_keep_since=started,
        workers=data.feature_workers,
    )
    if result.skipped:
        path, reason = result.skipped[0]
        log(f"skipped {len(result.skipped)} unreadable file(s) in {description}; first: {path} ({reason})")
    return result


def _no_usable_clip(recipe, root: Path, what: str, skipped) -> DatasetError:
    """The error for a split (or held-out group) whose every file ``data.skip_bad_files`` skipped."""
    path, reason = skipped[0]
    return DatasetError(
        f"{root}: no usable clip in {what} of the {recipe.data.dataset} dataset: all {len(skipped)} file(s) "
        f"were skipped as unreadable (data.skip_bad_files: true); first: {path} ({reason})"
    )


def held_out_examples(recipe, index: DatasetIndex) -> dict:
    """For each ``evaluate.held_out_groups`` entry, the examples of that group outside the training split.

    That is the paper's unseen-city evaluation (DCASE 2020 1B: Milan never appears in fold 1 training);
    it includes clips the setup files leave out of both splits.
    """
    train_split = recipe.data.train_split
    selected = {}
    for group in recipe.evaluate.held_out_groups:
        in_train = sum(1 for e in index.examples if e.group == group and e.split == train_split)
        if in_train:
            log(f"evaluate.held_out_groups: {in_train} training clips belong to {group!r}; it is not unseen")
        examples = tuple(e for e in index.examples if e.group == group and e.split != train_split)
        if not examples:
            log(f"evaluate.held_out_groups: no clip outside the training split belongs to {group!r}; not reported")
            continue
        selected[group] = examples
    return selected


def check_segment_frames(recipe) -> None:
    """A :class:`RecipeError` naming ``features.segment_frames`` when the recipe cannot cut its clips
    into segments: a waveform front-end (no frames: refused rather than cutting samples), waveform
    augmentation (it makes whole-clip features every step), or clips shorter than one segment."""
    segment_frames = recipe.features.segment_frames
    if segment_frames is None:
        return
    if recipe.features.kind == "waveform":
        raise RecipeError(f"features.segment_frames: {segment_frames}: features.kind: waveform has no frames to cut; "
                          "set features.segment_frames to null or use a front-end with frames (log_mel)")
    if needs_clips(recipe):
        given = "augment.waveform" if recipe.augment.waveform.enabled else "stages: mix_train"
        raise RecipeError(f"features.segment_frames: {segment_frames} cannot be combined with augment.waveform or the "
                          f"mix_train stage (here {given}): they make whole-clip features every training step; drop one")
    data = recipe.data
    shape = frontend_of(recipe).output_shape(int(round(data.sample_rate * data.duration_s)), data.channels)
    segments_per_clip(shape, segment_frames)


def prepare_data(recipe) -> PreparedData:
    """Load the dataset index, compute (or read cached) features of both splits, and targets."""
    check_segment_frames(recipe)
    data = recipe.data
    # File mtimes lag the clock by up to a tick: a second of margin spares every entry this preparation uses.
    started = time.time() - 1.0
    root = ensure_dataset(recipe)
    try:
        index = datasets.load(data.dataset, root, **data.options)
    except DatasetOptionError as error:  # the options are keys of the recipe's data section
        raise DatasetOptionError(f"data ({data.dataset} loader): {error}") from error
    splits = {}
    for name in (data.train_split, data.eval_split):
        examples = index.split(name)
        if not examples:
            raise DatasetError(
                f"{root}: the {data.dataset} index has no examples in split {name!r} "
                f"(splits present: {sorted({str(e.split) for e in index.examples})})"
            )
        splits[name] = _features(recipe, examples, f"features ({name})", started=started)
        if not splits[name].examples:
            raise _no_usable_clip(recipe, root, f"split {name!r}", splits[name].skipped)
    train, evaluation = splits[data.train_split], splits[data.eval_split]
    targets = lambda feature_set: label_targets(feature_set.examples, index.classes, multi_label=index.multi_label)
    eval_groups = np.array([e.group for e in evaluation.examples], dtype=object)
    eval_paths = {str(e.path) for e in evaluation.examples}
    held_out = {}
    for group, examples in held_out_examples(recipe, index).items():
        outside = [e for e in examples if str(e.path) not in eval_paths]
        extra = _features(recipe, outside, f"features ({group})", started=started) if outside else None
        eval_rows = np.flatnonzero(eval_groups == group)
        if extra is not None and not extra.examples:
            if not len(eval_rows):
                raise _no_usable_clip(recipe, root, f"held-out group {group!r} (evaluate.held_out_groups)", extra.skipped)
            extra = None  # every clip outside the evaluation split was skipped; its clips inside remain
        held_out[group] = HeldOutGroup(
            eval_rows=eval_rows,
            extra=extra,
            extra_targets=targets(extra) if extra is not None else None,
        )
    segment_frames = recipe.features.segment_frames
    if segment_frames is not None:
        frames = train.features.shape[2]
        per_clip = segments_per_clip(train.features.shape[1:], segment_frames)
        log(f"features.segment_frames: {per_clip} segments of {segment_frames} frames per clip of {frames} frames"
            + (f" (the last {frames - per_clip * segment_frames} frames dropped)" if frames % segment_frames else ""))
    return PreparedData(
        index=index,
        train=train,
        eval=evaluation,
        held_out=held_out,
        train_targets=targets(train),
        eval_targets=targets(evaluation),
        normalization=fit_normalization(recipe.features.normalization, segmented(train.features, segment_frames)),
        train_clips=_train_clips(recipe, train, started),
        segment_frames=segment_frames,
        sigmoid_outputs=sigmoid_outputs(recipe.training.loss.name, multi_label=index.multi_label),
        clip_seconds=data.duration_s,
    )


def needs_clips(recipe) -> bool:
    """Whether training reads decoded clips (augmented, mixed, then through the front-end each batch)
    rather than cached features: waveform augmentation, or the ``mix_train`` stage, which mixes
    waveforms (Chen et al. 2019 Sec. 3.2)."""
    return recipe.augment.waveform.enabled or "mix_train" in recipe.stages


def _train_clips(recipe, train: FeatureSet, started: float) -> FeatureSet | None:
    """The decoded training clips (:func:`needs_clips`), row for row with ``train``."""
    if not needs_clips(recipe):
        return None
    if recipe.features.kind == "waveform":
        return train
    clips = _features(recipe, train.examples, "decoded clips (train)", started=started,
                      frontend=frontends.make("waveform", recipe.features))
    if [e.path for e in clips.examples] != [e.path for e in train.examples]:
        raise DatasetError(f"{recipe.data.root}: the training clips that decode differ from those with finite "
                           "features; check the files data.skip_bad_files skipped")
    return clips


def normalized(features: np.ndarray, data: PreparedData, *, limit: int | None = None) -> np.ndarray:
    """Normalized model inputs (float32) of clip features ``features``: one per clip, or with
    ``features.segment_frames`` one per segment (a clip's segments consecutive). With ``limit``,
    that many spread evenly over all of them (a split's files are often sorted by class, and a clip's
    segments are neighbours: int8 calibration should see every part of it)."""
    inputs = data.inputs(features)
    if limit is not None and limit < len(inputs):
        inputs = inputs[np.linspace(0, len(inputs) - 1, limit).round().astype(np.int64)]
    return data.normalization(inputs)


