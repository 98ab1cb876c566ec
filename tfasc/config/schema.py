"""Recipe schema: one frozen dataclass per recipe section, with defaults, types and ranges.

A recipe is a YAML mapping whose top-level keys are the fields of :class:`Recipe`. Ranges live in
``field(metadata=...)`` (``min``/``max``/``gt``/``lt``) and are checked by :mod:`tfasc.config.load`.
Sections marked ``EXTRA_KEYS_FIELD`` are open: keys they do not declare are arguments of the component
they select (the model builder, the dataset loader) and are checked against its signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from tfasc.augment.mixing import AugmentPolicy
from tfasc.augment.waveform import WaveformAugmentPolicy
from tfasc.data.features import LogMelParams
from tfasc.search.space import SearchSpace


def _range(**bounds) -> dict:
    return {"metadata": bounds}


@dataclass(frozen=True, kw_only=True)
class SynthesizeConfig:
    """Synthesize a small dataset in the real DCASE 2020 1B layout when ``data.root`` does not exist."""

    clips: int = field(default=0, **_range(min=0))
    """Number of clips to write; 0 disables synthesis (a missing root is then an error)."""
    seed: int = 0
    sample_rate: int = field(default=48000, **_range(min=1000))
    duration_s: float = field(default=10.0, **_range(gt=0))
    channels: int = field(default=2, **_range(min=1, max=2))


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the audio is, how it is read, and how it is batched."""

    EXTRA_KEYS_FIELD: ClassVar[str] = "options"

    dataset: str = "dcase2020_1b"
    """Layout loader name (``tfasc.data.datasets.available()``)."""
    root: str = "data/dcase2020_1b"
    """Dataset root folder, relative to the working directory or absolute."""
    options: dict[str, Any] = field(default_factory=dict)
    """Loader options (e.g. ``fold``, ``eval_fold``); given as plain keys of the ``data`` section."""
    synthesize: SynthesizeConfig = field(default_factory=SynthesizeConfig)
    sample_rate: int = field(default=48000, **_range(min=1000))
    """Every clip is resampled to this rate."""
    duration_s: float = field(default=10.0, **_range(gt=0))
    """Every clip is cropped or zero-padded to this length."""
    channels: int = field(default=2, **_range(min=1, max=2))
    """Channels read from each file (mono files are repeated, stereo averaged when 1)."""
    train_split: str = "train"
    eval_split: str = "evaluate"
    skip_bad_files: bool = False
    """Skip (and count) corrupt, empty or unreadable files instead of stopping."""
    cache: bool = True
    """Keep computed features on disk, keyed by a hash of the feature parameters and file list."""
    cache_dir: str = ".tfasc_cache"
    cache_max_gb: float = field(default=20.0, **_range(min=0))
    """Cap of the feature cache's size on disk: after writing an entry, the least recently used
    other entries are evicted until the cache fits (``python -m tfasc.cache list`` shows them)."""
    feature_workers: int = field(default=1, **_range(min=0))
    """Processes computing features (a shard of clips each, bit-identical whatever their number):
    1 for the training process alone, 0 for one per CPU. Each worker pays a TensorFlow start-up
    (~2.5 CPU-s) and the front-end already uses more than one core: on 2 cores two workers were
    slower (200 DCASE clips: 9.7 s with 1, 16-27 s with 2), so more than one pays on many cores only."""
    batch_size: int = field(default=32, **_range(min=1))
    seed: int = 0
    """Seed of shuffling and augmentation."""
    sampling: Literal["shuffle", "balanced"] = "shuffle"
    """How training batches draw examples: ``shuffle`` visits every example once per pass in a fresh
    random order; ``balanced`` draws classes in turn so every class appears equally often, then an
    example of that class (PANNs' balanced sampler, used by the ERANN paper, Sec. 4.2, for the highly
    unbalanced AudioSet training list)."""


@dataclass(frozen=True, kw_only=True)
class FeaturesConfig(LogMelParams):
    """The model's input: which front-end (``kind``) and its parameters.

    ``log_mel`` (default) uses the log-mel fields (:class:`tfasc.data.features.LogMelParams`, the one
    place of their defaults); ``waveform`` feeds the decoded clip ``[samples, channels]`` and ignores
    them. See :mod:`tfasc.data.frontends`.
    """

    kind: str = "log_mel"
    """Front-end: ``log_mel``, ``scalogram`` or ``waveform`` (``tfasc.data.frontends.available()``)."""
    scalogram_bins: int = field(default=128, **_range(min=1))
    """scalogram: wavelet filters (frequency bins) of the filter bank (Wu & Lee, Sec. 4.2: 128)."""
    wavelets_per_octave: int = field(default=16, **_range(min=1))
    """scalogram: Q, wavelets per octave (Wu & Lee, Sec. 4.2 with Kymatio: 16)."""
    wavelet_max_scale: int = field(default=1024, **_range(min=2))
    """scalogram: largest wavelet scale 2**J in samples of the ``n_fft`` support (Wu & Lee: 1024)."""
    segment_frames: int | None = field(default=None, **_range(min=1))
    """Cut each clip's front-end output into non-overlapping segments of this many frames (a trailing
    remainder shorter than a segment is dropped); every segment is one model input and a clip's
    probabilities are the mean of its segments' (Wu & Lee, Sec. 3.1 / 4.2: 128). None: the whole clip."""
    normalization: Literal["global", "per_frequency", "per_clip", "per_clip_frequency", "none"] = "global"
    """How model inputs are normalized (:mod:`tfasc.data.normalization`; the export and the C bundle
    reproduce it): ``global`` subtracts the training set's mean and divides by its standard deviation
    (one scalar each); ``per_frequency`` does so per frequency bin (log-mel and scalogram); ``per_clip`` uses each
    clip's own mean and standard deviation over all its values; ``per_clip_frequency`` each clip's own
    per-bin statistics over time (cepstral mean and variance normalization; not for waveforms);
    ``none`` leaves the front-end's output as it is."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which registered model to build; other keys are that builder's arguments."""

    EXTRA_KEYS_FIELD: ClassVar[str] = "options"

    name: str = "baseline_cnn"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PhaseConfig:
    """One phase of a ``phases`` learning-rate schedule."""

    epochs: int = field(**_range(min=1))
    start: float = field(**_range(gt=0))
    end: float | None = field(default=None, **_range(gt=0))
    """Learning rate at the end of the phase (default: ``start``)."""
    shape: Literal["constant", "linear", "exponential", "cosine"] = "constant"


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Learning-rate schedule; ``training.learning_rate`` is the initial (one-cycle: peak) rate."""

    name: Literal["constant", "piecewise_constant", "exponential_decay", "linear_decay", "one_cycle", "phases"] = "constant"
    boundaries: tuple[int, ...] = field(default=(), **_range(min=1))
    """piecewise_constant: epochs at which the rate changes."""
    values: tuple[float, ...] = field(default=(), **_range(gt=0))
    """piecewise_constant: one rate per interval (``len(boundaries) + 1``)."""
    final_learning_rate: float = field(default=1e-6, **_range(gt=0))
    """exponential_decay / linear_decay: the rate reached after ``decay_epochs``."""
    decay_epochs: int | None = field(default=None, **_range(min=1))
    """exponential_decay / linear_decay: epochs to decay over (default: all), then hold."""
    warmup_fraction: float = field(default=0.3, **_range(gt=0, lt=1))
    """one_cycle: fraction of training spent rising to the peak."""
    div_factor: float = field(default=25.0, **_range(gt=0))
    """one_cycle: initial rate = peak / div_factor."""
    final_div_factor: float = field(default=1e4, **_range(gt=0))
    """one_cycle: final rate = initial / final_div_factor."""
    phases: tuple[PhaseConfig, ...] = ()

    def __post_init__(self):
        if self.name == "piecewise_constant" and len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"schedule.values: piecewise_constant needs len(boundaries) + 1 = {len(self.boundaries) + 1} "
                f"values, got {len(self.values)}"
            )
        if list(self.boundaries) != sorted(set(self.boundaries)):
            raise ValueError(f"schedule.boundaries: expected strictly increasing epochs, got {list(self.boundaries)}")
        if self.name == "phases" and not self.phases:
            raise ValueError("schedule.phases: the phases schedule needs at least one phase")


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    name: Literal["crossentropy", "binary_crossentropy", "cb_focal"] = "crossentropy"
    """``crossentropy``: softmax outputs (sigmoid for multi-label data); ``binary_crossentropy``: an
    independent sigmoid per class with binary cross-entropy on one-hot targets, also for single-label
    data (Wu & Lee, Sec. 4.3), and sigmoid probabilities in evaluation; ``cb_focal``: class-balanced focal."""
    label_smoothing: float = field(default=0.0, **_range(min=0, lt=1))
    beta: float = field(default=0.999, **_range(min=0, lt=1))
    """cb_focal: class-balancing β of Cui et al. (2019)."""
    gamma: float = field(default=2.0, **_range(min=0))
    """cb_focal: focusing parameter γ."""


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    epochs: int = field(default=10, **_range(min=1))
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = field(default=1e-3, **_range(gt=0))
    momentum: float = field(default=0.9, **_range(min=0, lt=1))
    """sgd: momentum."""
    nesterov: bool = False
    weight_decay: float = field(default=0.0, **_range(min=0))
    """Decoupled weight decay (AdamW / SGDW style) applied by the optimizer."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps_per_epoch: int | None = field(default=None, **_range(min=1))
    """Batches per epoch (default: one pass over the training split)."""
    seed: int = 0
    """Seed of weight initialization."""
    init_from: str | None = None
    """Transfer learning (ERANN paper, Sec. 2 / 4.3): start from another run's trained model (its run
    directory) or a ``.keras`` file instead of random weights; the classification head (the last Dense
    or convolution producing the logits, and any normalization after it) is always replaced for this
    recipe's classes and every weight is fine-tuned (paper: a constant 1e-4, the recipe's
    ``learning_rate``). The recipe's ``model:`` section is then not used. None: train from scratch."""
    ema_decay: float | None = field(default=None, **_range(gt=0, lt=1))
    """Keep an exponential moving average of the weights, ``ema = decay * ema + (1 - decay) * w`` after
    every optimizer step (ERANN paper, Eq. 6), and evaluate, save and export the averaged weights
    (None: off). Typical: 0.99-0.999."""
    ema_batchnorm_batches: int = field(default=0, **_range(min=0))
    """With ``ema_decay``: re-estimate the BatchNorm statistics of the averaged weights on this many
    training batches before every evaluation and at the end (stochastic weight averaging's rule: the
    raw weights' statistics need not fit their average). 0: keep the raw model's statistics. Measured
    on FSDD (ERANN, speaker george, after a one-cycle schedule that ends near zero, where the average
    and the raw weights agree): 77.0 % with the raw statistics, 76.0 % re-estimated on 32 batches."""


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    held_out_groups: tuple[str, ...] = ()
    """Groups (e.g. cities) reported separately on all their clips outside the training split,
    e.g. the unseen city ``milan`` of DCASE 2020 1B."""
    batch_size: int = field(default=64, **_range(min=1))


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    dir: str = "runs"
    """Parent folder of run directories ``<dir>/<recipe>-<timestamp>/``."""
    plots: bool = True
    tensorboard: bool = True


@dataclass(frozen=True, kw_only=True)
class DistributeConfig:
    """How the training stages spread over devices and machines: TensorFlow's own
    ``tf.distribute`` strategies (:mod:`tfasc.training.distribute`). The global batch is always
    ``data.batch_size``, split evenly over the replicas; a worker with several devices gets one
    replica per device."""

    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    """``default``: one device. ``mirrored``: ``tf.distribute.MirroredStrategy`` over this machine's
    ``devices``. ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over ``workers``
    (or the cluster in ``TF_CONFIG`` when ``workers`` is empty)."""
    devices: tuple[str, ...] = ()
    """``mirrored``: the devices, e.g. ``[/gpu:0, /gpu:1]``; empty: every GPU, else the CPU(s)."""
    cpu_devices: int = field(default=0, **_range(min=0))
    """Split the host CPU into this many logical devices first (0: leave it whole): mirrored
    training on a machine without GPUs, as the tests do."""
    workers: tuple[str, ...] = ()
    """``multi_worker``: ``host:port`` of every worker, worker 0 (the chief, who writes the run
    directory, report and bundle) first; the same list on every machine. Empty: ``TF_CONFIG``."""
    worker_index: int = field(default=0, **_range(min=0))
    """``multi_worker`` with ``workers``: which of them this process is."""
    sync_batchnorm: bool = True
    """On several replicas, Keras BatchNorms normalize by the statistics of the whole global batch (an
    all-reduce per layer and step), as one device does; false: each replica's own slice (cheaper,
    noisier with small slices). tfasc's sub-spectral normalization always uses the replica's slice."""

    def __post_init__(self):
        if self.strategy != "multi_worker" and (self.workers or self.worker_index):
            raise ValueError("distribute.workers and worker_index need distribute.strategy: multi_worker, got "
                             f"{self.strategy}")
        if self.strategy != "mirrored" and self.devices:
            raise ValueError(f"distribute.devices needs distribute.strategy: mirrored, got {self.strategy}")
        for address in self.workers:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"distribute.workers: {address!r} is not host:port (e.g. 10.0.0.2:12345)")
        if len(set(self.workers)) != len(self.workers):
            raise ValueError(f"distribute.workers: expected distinct addresses, got {list(self.workers)}")
        if self.worker_index and not self.workers:
            raise ValueError("distribute.worker_index: needs distribute.workers (with TF_CONFIG the task index "
                             "comes from TF_CONFIG)")
        if self.workers and self.worker_index >= len(self.workers):
            raise ValueError(f"distribute.worker_index: {self.worker_index} is not one of the "
                             f"{len(self.workers)} workers (0 .. {len(self.workers) - 1})")


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """Magnitude pruning then fine-tuning (DCASE 2020 1B report, entry Chang_QTI_task1b, Sec. 5.1: global L1 unstructured, 60 %,
    fine-tuning with the learning rate decaying linearly 1e-4 → 1e-6)."""

    target_sparsity: float = field(default=0.6, **_range(gt=0, lt=1))
    """Fraction of zeros over all convolution / dense kernels."""
    mode: Literal["global", "per_layer"] = "global"
    """``global``: one magnitude threshold across all layers (as the paper); ``per_layer``: TF-MOT's default."""
    epochs: int = field(default=10, **_range(min=1))
    """Fine-tuning epochs (sparsity ramps up during the first ``ramp_fraction`` of them)."""
    ramp_fraction: float = field(default=0.5, **_range(gt=0, max=1))
    frequency: int = field(default=10, **_range(min=1))
    """Optimizer steps between mask updates."""
    learning_rate: float = field(default=1e-4, **_range(gt=0))
    final_learning_rate: float = field(default=1e-6, **_range(gt=0))


@dataclass(frozen=True, kw_only=True)
class QatConfig:
    """Quantization-aware fine-tuning of the whole model (TF-MOT, 8-bit weights and activations)."""

    epochs: int = field(default=3, **_range(min=0))
    learning_rate: float = field(default=1e-5, **_range(gt=0))
    final_learning_rate: float = field(default=1e-6, **_range(gt=0))
    preserve_sparsity: bool = True
    """Keep pruned zeros at zero (prune-preserving QAT) when the prune stage ran."""


@dataclass(frozen=True, kw_only=True)
class MixTrainConfig:
    """Stage ``mix_train``, the first step of the mix-training strategy (Chen et al. 2019, Sec. 3.2,
    Eq. 1-3): train from the start (``training.init_from`` or random weights) on pairs of training
    clips mixed on the waveform, ``x = a x_i + (1 - a) x_j``, labelled ``sign(y_i + y_j)``, with the
    sigmoid cross-entropy of Eq. 3. Every other setting is ``training``'s (epochs, optimizer,
    schedule, EMA). The recipe's own mixing (``augment.waveform.mix``, mixup, FreqMix, CutMix) is
    left out of this stage; its other augmentations stay."""

    ratio: tuple[float, float] = field(default=(0.4, 0.6), **_range(min=0, max=1))
    """The range ``[low, high]`` of the mixing ratio ``a``, drawn uniformly per pair (paper: ``(0, 1)``
    in Fig. 2, ``(0.4, 0.6)`` better, Sec. 4.2)."""

    def __post_init__(self):
        if len(self.ratio) != 2 or self.ratio[0] > self.ratio[1]:
            raise ValueError(f"ratio: expected [low, high] with low <= high, got {list(self.ratio)}")


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Stage ``finetune``, the second step of the mix-training strategy (Chen et al. 2019, Sec. 3.2):
    continue training the newest float model on the raw data (the recipe's augmentation and loss) at
    a lower learning rate (paper: Adam 3e-5 after 3e-4)."""

    epochs: int = field(default=10, **_range(min=1))
    learning_rate: float = field(default=3e-5, **_range(gt=0))
    final_learning_rate: float | None = field(default=None, **_range(gt=0))
    """Decays linearly to this by the last step; None: constant ``learning_rate``, as the paper."""


@dataclass(frozen=True, kw_only=True)
class CompressConfig:
    prune: PruneConfig = field(default_factory=PruneConfig)
    qat: QatConfig = field(default_factory=QatConfig)


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """The export's check on emulated Cortex-M cores (:mod:`tfasc.device`): the bundle compiled with
    TFLite Micro + CMSIS-NN (+ its CMSIS-DSP front end) and run under QEMU, every output compared with the
    Python interpreter; arena, sizes and instructions per target in the report and the bundle."""

    targets: tuple[Literal["cortex-m4", "cortex-m55", "cortex-m55-dsp"], ...] = ("cortex-m4", "cortex-m55")
    """Cores to build and run on (``cortex-m55``: Helium on; ``cortex-m55-dsp``: Helium off); [] skips the check."""
    sources: str | None = None
    """The TFLite Micro / CMSIS source tree, laid out like ``../shared/third_party`` (None: ``$TFASC_DEVICE_SOURCES``)."""
    examples: int = field(default=8, **_range(min=1))
    """Verified int8 inputs run on each core (of ``export.verify_examples``)."""
    clips: int = field(default=4, **_range(min=0))
    """Evaluation clips run from int16 PCM through the bundle's front end and model on each core."""
    required: bool = False
    """Fail the export when the tools or sources are missing here (else the report says why the check did not run)."""


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """int8 / float16 / float32 TFLite export, TFLite Micro verification and the Cortex-M bundle."""

    representative_examples: int = field(default=200, **_range(min=1))
    """Training clips used to calibrate int8 ranges."""
    verify_examples: int = field(default=32, **_range(min=1))
    """Evaluation clips run through TFLite Micro and compared bit for bit with TFLite."""
    smallest_arena: bool = True
    """Also search the smallest tensor arena that works (bisection, a few seconds)."""
    device: DeviceConfig = field(default_factory=DeviceConfig)


@dataclass(frozen=True, kw_only=True)
class AugmentConfig(AugmentPolicy):
    """Batch augmentation (:class:`tfasc.augment.mixing.AugmentPolicy`) plus per-example waveform
    augmentation of the decoded clip before the front-end (``waveform``; training split only)."""

    waveform: WaveformAugmentPolicy = field(default_factory=WaveformAugmentPolicy)


@dataclass(frozen=True, kw_only=True)
class CrossValConfig:
    """Cross-validation (``python -m tfasc.crossval``): one run per fold, fold ``v`` setting the data
    option ``data.<option>`` to ``v``."""

    option: str | None = None
    """The data loader option that selects the held-out fold: ``eval_speaker`` (fsdd with
    ``split: speaker``), ``eval_fold`` (esc50, urbansound8k), ``fold`` (dcase2019_1a, dcase2020_1b)."""
    folds: tuple[str | int, ...] = ()
    """The option's value of every fold, e.g. ``[1, 2, 3, 4, 5]`` for ESC-50."""

    def __post_init__(self):
        if len(set(self.folds)) != len(self.folds):
            raise ValueError(f"crossval.folds: expected distinct folds, got {list(self.folds)}")
        if bool(self.option) != bool(self.folds):
            raise ValueError("crossval: expected both option and folds, or neither")


@dataclass(frozen=True, kw_only=True)
class SearchLimits:
    """What a candidate may cost (``python -m tfasc.search``); a candidate outside is rejected before
    it is trained. Device limits (None: not checked) are measured on the untrained model's int8
    conversion with random representative data (:mod:`tfasc.deploy.estimate`)."""

    min_paper_size_bytes: int = field(default=250_000, **_range(min=0))
    """Wu & Lee, Sec. 3.3: float32 size (4 bytes per kernel weight and output bias) of at least 250 KB."""
    max_paper_size_bytes: int | None = field(default=500_000, **_range(min=1))
    """... and at most 500 KB (None: no upper bound)."""
    max_int8_flash_bytes: int | None = field(default=None, **_range(min=1))
    """Largest int8 flatbuffer (what the device stores)."""
    max_macs_per_second: float | None = field(default=None, **_range(gt=0))
    """Most multiply-accumulates per second of audio."""
    max_arena_bytes: int | None = field(default=None, **_range(min=1))
    """Largest TFLite Micro tensor arena."""

    def __post_init__(self):
        if self.max_paper_size_bytes is not None and self.max_paper_size_bytes < self.min_paper_size_bytes:
            raise ValueError(
                f"max_paper_size_bytes {self.max_paper_size_bytes} is below min_paper_size_bytes "
                f"{self.min_paper_size_bytes}"
            )


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Random architecture search over the Wu & Lee space (``python -m tfasc.search``, Sec. 3.3)."""

    candidates: int = field(default=20, **_range(min=1))
    """Candidates to train (the paper: 510)."""
    max_draws: int = field(default=100_000, **_range(min=1))
    """Give up after this many samples from the space (limits that almost nothing meets)."""
    seed: int = 0
    """Seed of the sampling: the same seed draws the same sequence, which is what resuming replays."""
    space: SearchSpace = field(default_factory=SearchSpace)
    limits: SearchLimits = field(default_factory=SearchLimits)
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(
        epochs=3, optimizer="adam", learning_rate=1e-3, weight_decay=0.0015,
        schedule=ScheduleConfig(name="piecewise_constant", boundaries=(1, 2), values=(1e-3, 1e-4, 1e-5)),
        loss=LossConfig(name="binary_crossentropy")))
    """How every candidate is trained; the default is the paper's (Sec. 4.3: 3 epochs, Adam 1e-3 x0.1
    per epoch, weight decay 0.0015, binary cross-entropy). A ``search.training`` mapping in a recipe
    replaces it whole (keys it leaves out take ``training``'s defaults). The recipe's own ``training``
    section is the final retraining's."""
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(mixup_prob=1.0, mixup_alpha=0.2))
    """Candidates' augmentation; the default is the paper's mixup (alpha not in the paper: 0.2). The
    recipe's ``augment`` is the retraining's."""
    retrain: tuple[Literal["accuracy", "loss"], ...] = ("accuracy",)
    """Retrain from scratch, through the recipe's stages, the candidate with the best accuracy and/or
    the lowest loss (Sec. 3.3: model A and model B); empty: search only."""
    top: int = field(default=10, **_range(min=1))
    """Rows of the summary's candidate table."""


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str = "recipe"
    """Recipe name (defaults to the file name without extension)."""
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Batch augmentation (FreqMix / CutMix / mixup / SpecAugment) and per-example waveform
    augmentation (``augment.waveform``); the defaults augment nothing."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    mix_train: MixTrainConfig = field(default_factory=MixTrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    """Training on several devices or machines (``tf.distribute``); the default is one device."""
    crossval: CrossValConfig = field(default_factory=CrossValConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    """Architecture search (``python -m tfasc.search``); ignored by ``tfasc.train``."""
    stages: tuple[str, ...] = ("train",)
    """Stages to run, in the order of the stage table (``tfasc.training.stages``); each reads its
    input from the run directory's manifest."""

    def __post_init__(self):
        if not self.stages or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages: expected a non-empty list of distinct stage names, got {list(self.stages)}")
