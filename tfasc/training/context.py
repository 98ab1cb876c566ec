"""What every stage gets: the recipe, the run directory and its manifest, where to write its
artifacts, the prepared data, and the shared ways to build datasets, fine-tune a model and load a
model from the run directory (verified against the manifest, never by running code from a file)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.augment.mixing import make_batch_augmenter
from tfasc.data.pipeline import make_dataset
from tfasc.data.prepare import PreparedData, frontend_of
from tfasc.evaluate import evaluate_model
from tfasc.training import loop
from tfasc.training.rundir import Manifest, RunClock
from tfasc.training.schedules import Phase, PhasedSchedule

#: Artifact kinds that are Keras models, and how to load each.
FLOAT_MODEL = "float_model"
QAT_MODEL = "qat_model"


@dataclass(frozen=True)
class StageContext:
    recipe: Any
    run_dir: Path
    data: PreparedData
    out_dir: Path | None = None
    """Where the running stage writes its artifacts (a staging folder the stage table moves into
    the run directory when the stage has succeeded); None: the run directory."""
    clock: RunClock | None = None
    """Adds each finished epoch's time to the run's total."""
    distribution: Any = None
    """The :class:`tfasc.training.distribute.Distribution` the training stages run under (None: one device)."""
    chief: bool = True
    """Whether this process writes the run directory; the other workers of a multi-worker run train
    alongside it, writing their artifacts to a private folder that is thrown away
    (:mod:`tfasc.training.distribute`)."""

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.run_dir)

    def output(self, relative: str = "") -> Path:
        """Where to write the artifact ``relative`` (e.g. ``model.keras``); without one, the folder."""
        base = self.out_dir or self.run_dir
        return base / relative if relative else base

    def fit_options(self) -> dict:
        """``loop.fit``'s arguments that depend on the run: CSV and TensorBoard logs from the chief
        only, and the distribution's BatchNorm synchronization."""
        return {"logs": self.chief, "tensorboard": self.chief and self.recipe.output.tensorboard,
                "sync_batchnorm": self.recipe.distribute.sync_batchnorm}

    def epoch_callbacks(self) -> list:
        """Callbacks every stage's ``fit`` gets: the run clock ticks at each epoch end."""
        if self.clock is None:
            return []
        return [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.clock.tick())]

    # -- data ---------------------------------------------------------------------------------

    def train_dataset(self, start_batch: int = 0, *, mixer: Callable | None = None, part=(0, 1)):
        """The endless, shuffled, augmented training batches from global batch ``start_batch`` on
        (the same batches whether a run was resumed or not). With ``augment.waveform`` the decoded
        clips are augmented per example, mixed in pairs (``augment.waveform.mix``), then go through
        the front-end, every batch: the inputs are the front-end's output for the augmented length
        (``augment.waveform.crop_s`` or ``window_s`` when set), and are normalized as the recipe
        says unless the chain standardized waveforms fed to the model as they are (``standardize``
        with ``features.kind: waveform``).
        With ``features.segment_frames`` every segment of every clip is an example with its clip's label.

        ``mixer`` (``fn(clips, targets, batch_index) -> (clips, targets)``, e.g. the mix-training's)
        replaces the recipe's mixing: it mixes the clips instead of ``augment.waveform.mix``, and the
        batch mixing (mixup, FreqMix, CutMix) is off; the other augmentations stay.

        ``part=(i, n)``: replica ``i`` of ``n``'s slice of every batch (:mod:`tfasc.training.distribute`);
        with ``n > 1`` a pass holds full batches only, so every replica's slice has the same size."""
        recipe, data = self.recipe, self.data
        policy = recipe.augment if mixer is None else without_mixing(recipe.augment)
        augment = (make_batch_augmenter(policy, recipe.data.seed, steps_per_epoch=self.steps_per_epoch())
                   if policy.enabled else None)
        batches = dict(batch_size=recipe.data.batch_size, shuffle=True, seed=recipe.data.seed, augment=augment,
                       repeat=True, start_batch=start_batch, sampling=recipe.data.sampling, part=tuple(part),
                       drop_remainder=part[1] > 1)
        targets = data.input_targets(data.train_targets)
        clips = data.train_clips
        if clips is None and mixer is not None:
            raise ValueError("a clip mixer needs the decoded training clips (tfasc.data.prepare.needs_clips)")
        if clips is None:
            return make_dataset(data.inputs(data.train.features), targets, normalize=data.normalization, **batches)
        waveform = policy.waveform
        samples, channels = clips.features.shape[1:]
        shape = frontend_of(recipe).output_shape(waveform.output_samples(samples, recipe.data.sample_rate), channels)
        # The chain's standardization is the per_clip normalization (AclNet Sec. 3.2 puts it before
        # the gain); normalizing the model's waveform inputs again would undo the gain.
        standardized = waveform.standardize and recipe.features.kind == "waveform"
        return make_dataset(clips.features, targets, normalize=None if standardized else data.normalization,
                            transform=self.clip_transform(mixer), transformed_shape=shape, **batches)

    def clip_transform(self, mixer: Callable | None = None) -> Callable:
        """``fn(clips [batch, samples, channels], targets [batch, classes], batch_index) -> (features,
        targets)``: the recipe's per-example waveform augmentation (example ``batch_index *
        batch_size + row``), then its mixing of clips in pairs (``augment.waveform.mix``, seeded by
        ``(data.seed, batch_index)``, targets mixed alike; ERANNs Sec. 3.2: augmentation per
        mini-batch before the feature extractor), then the front-end, in graph mode. Called with
        ``part=(i, first_row)`` for replica ``i``'s slice of the batch (``make_dataset(part=...)``)."""
        from tfasc.augment.between_class import make_waveform_mixer
        from tfasc.augment.waveform import augment_batch, make_waveform_augmenter

        recipe = self.recipe
        policy = recipe.augment.waveform
        batch_size, sample_rate = recipe.data.batch_size, recipe.data.sample_rate
        augmenter = (make_waveform_augmenter(policy, recipe.data.seed, sample_rate, channels=recipe.data.channels)
                     if policy.per_example else None)
        mixer = mixer or make_waveform_mixer(policy, recipe.data.seed, sample_rate)
        frontend = frontend_of(recipe)
        cache_dtype = tf.as_dtype(np.dtype(frontend.cache_dtype)) if recipe.data.cache else tf.float32

        # Plain TensorFlow ops with Python control flow on static values only: AutoGraph's conversion
        # of the whole chain would only cost seconds each time a dataset is built.
        @tf.autograph.experimental.do_not_convert
        def transform(clips, targets, batch_index, part=None):
            first_example = tf.cast(batch_index, tf.int64) * batch_size
            mix_key = batch_index
            if part is not None:  # one replica's slice (make_dataset's part): rows from part[1] on
                first_example += tf.cast(part[1], tf.int64)
                # A key of its own per (batch, slice) for the pairwise mix: slices do not repeat each other.
                mix_key = tf.cast(batch_index, tf.int64) * 1_000_003 + part[0]
            if augmenter is not None:
                clips = augment_batch(augmenter, clips, first_example)
            clips, targets = mixer(clips, targets, mix_key)
            features = frontend(clips, sample_rate=sample_rate)
            # The cache's rounding, so training sees what evaluation reads back from the cache.
            return tf.cast(tf.cast(features, cache_dtype), tf.float32), targets

        return transform

    def eval_dataset(self):
        """The evaluation split's model inputs and targets for ``fit``'s per-epoch validation (per
        segment with ``features.segment_frames``; :meth:`evaluate` scores clips)."""
        data = self.data
        return make_dataset(data.inputs(data.eval.features), data.input_targets(data.eval_targets),
                            batch_size=self.recipe.evaluate.batch_size, shuffle=False, normalize=data.normalization)

    def steps_per_epoch(self) -> int:
        return loop.steps_per_epoch(self.data.training_inputs,
                                    self.recipe.data.batch_size, self.recipe.training.steps_per_epoch)

    def class_counts(self) -> np.ndarray:
        """Training examples (model inputs: segments with ``features.segment_frames``) per class."""
        return self.data.train_targets.sum(axis=0) * self.data.segments_per_clip

    def evaluate(self, model) -> dict:
        """``metrics`` and ``held_out`` of ``model`` (see :func:`tfasc.evaluate.evaluate_model`)."""
        return evaluate_model(model, self.data, batch_size=self.recipe.evaluate.batch_size)

    # -- models -------------------------------------------------------------------------------

    def load(self, kind: str, *, by: str):
        """The newest model of ``kind`` in the manifest, loaded after checking its size and hash
        against the manifest (an error names stage ``by`` and the file if absent or changed).

        Float models load from ``.keras`` archives in safe mode after their config is checked
        (:func:`tfasc.models.saving.load_model`); a model kind whose layers do not load from
        ``.keras`` registers a loader that rebuilds it with tfasc's code and fills in the weights.
        """
        from tfasc.models.saving import load_model
        from tfasc.training import stages  # noqa: F401  (the stage table registers MODEL_LOADERS)

        path = self.manifest.require(kind, by=by)
        loader = MODEL_LOADERS.get(kind)
        # Stages re-compile what they fine-tune, so no saved optimizer is needed.
        return loader(self, path, by) if loader else load_model(path)


def without_mixing(policy):
    """``policy`` (``recipe.augment``) with no mixing of examples: no mixup, FreqMix or CutMix, no
    ``waveform.mix``; masks and per-example waveform augmentation unchanged."""
    return replace(policy, mixup_prob=0.0, freqmix_prob=0.0, cutmix_prob=0.0,
                   waveform=replace(policy.waveform, mix="none"))


#: Artifact kind -> ``loader(context, path, by)`` for models that are not plain ``.keras`` archives
#: (registered by the stage that writes them, e.g. the QAT stage's weights-only file).
MODEL_LOADERS: dict[str, Callable] = {}


def fine_tune(context: StageContext, model, *, name: str, epochs: int, learning_rate: float,
              final_learning_rate: float, loss=None, callbacks=()) -> None:
    """Fine-tune ``model`` with Adam, the learning rate decaying linearly (the pruning fine-tuning of
    the DCASE 2020 1B report, entry Chang_QTI_task1b, Sec. 5.1), the recipe's augmentation and ``loss`` (default: the recipe's).

    A distillation or clustering stage passes its own ``model`` and ``loss``. Resumable per epoch
    like training (backups in ``checkpoints/<name>``).
    """
    steps = context.steps_per_epoch()
    schedule = PhasedSchedule.from_phases([Phase(epochs * steps, learning_rate, final_learning_rate, "linear")])
    trainee = loop.compile_model(
        model, context.recipe.training, steps=steps, class_counts=context.class_counts(),
        multi_label=context.data.index.multi_label, optimizer=keras.optimizers.Adam(learning_rate=schedule), loss=loss,
    )
    loop.fit(trainee, context.train_dataset, context.eval_dataset(), epochs=epochs, steps=steps,
             run_dir=context.run_dir, name=name, **context.fit_options(),
             extra_callbacks=[*callbacks, *context.epoch_callbacks()])


def parameter_summary(model) -> dict:
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
    }
