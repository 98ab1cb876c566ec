"""The shipped recipes: they validate, carry the papers' settings, and run end to end on tiny data."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tfasc.config import load_recipe
from tfasc.deploy.convert import io_quantization
from tfasc.train import main
from tfasc.training.run import validate_components

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def assert_ran_on_the_emulated_cores(deploy: dict, *, pcm: bool) -> None:
    """Where the shipped recipes' device sources and the tools are here, the export ran the bundle on
    both default cores, bit-exact, and (``pcm``) its held-out clips from PCM to the Python pipeline's labels."""
    from tfasc.device.toolchain import unavailable_reason

    if unavailable_reason(load_recipe(RECIPES / "quickstart.yaml").export.device.sources) is not None:
        assert deploy["device"]["skipped"]
        return
    for name in ("cortex-m4", "cortex-m55"):
        figures = deploy["device"]["targets"][name]
        assert figures["bit_exact"] and figures["arena_bytes_used"] > 0 and figures["instructions_per_inference"] > 0
        if pcm:
            assert figures["pcm"]["labels_equal"] == figures["pcm"]["clips"] > 0, figures["pcm"]


def run_shipped_recipe(name: str, out: Path, overrides: dict) -> int:
    """``python -m tfasc.train recipes/NAME --out OUT --set KEY=VALUE ...``; returns the exit status."""
    argv = [str(RECIPES / name), "--out", str(out)]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    return main(argv)


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_recipe_validates(name):
    recipe = load_recipe(RECIPES / name)
    if recipe.training.init_from:  # a fine-tuning recipe names the pre-trained model the user supplies
        with pytest.raises(ValueError, match=r"training.init_from: .*" + re.escape(recipe.training.init_from) + " does not exist"):
            validate_components(recipe)
        recipe = load_recipe(RECIPES / name, ["training.init_from=null"])
    validate_components(recipe)


#: ERANN recipe -> (model widening, s_m, crop t_c, pitch shift, learning rate, init_from set): Sec. 4.2-4.5.
ERANN_RECIPES = {
    "audioset_erann.yaml": (6, 1, 8.0, False, 1e-3, False),   # ERANN-1-6, Table 4's best mAP
    "esc50_erann.yaml": (5, 2, 4.0, False, 1e-4, True),       # ERANN-2-5 fine-tuned, Table 6's best
    "urbansound8k_erann.yaml": (6, 2, None, False, 1e-4, True),  # ERANN-2-6 fine-tuned, no cropping
    "ravdess_erann.yaml": (4, 0, 3.0, True, 2e-4, False),     # ERANN-0-4 from scratch, pitch shifting
}


@pytest.mark.parametrize("name", sorted(ERANN_RECIPES))
def test_erann_recipes_have_the_papers_settings(name):
    widening, temporal_param, crop, pitch, learning_rate, fine_tuned = ERANN_RECIPES[name]
    recipe = load_recipe(RECIPES / name)
    assert recipe.model.name == "erann"
    assert (recipe.model.options["widening"], recipe.model.options["temporal_param"]) == (widening, temporal_param)
    # Sec. 3.1: 44.1 kHz mono, Hann 1380, hop 345, 128 mels, 50-14,000 Hz; the model's BN standardizes.
    features = recipe.features
    assert (recipe.data.sample_rate, recipe.data.channels) == (44100, 1)
    assert (features.n_fft, features.hop_length, features.n_mels, features.fmin, features.fmax) == (
        1380, 345, 128, 50.0, 14000.0)
    assert features.normalization == "none"
    # Sec. 3.2 / 4: SpecAugment, modified mixup on the waveform, t_c, pitch shifting (RAVDESS).
    wave = recipe.augment.waveform
    assert recipe.augment.freq_masks > 0 and recipe.augment.time_masks > 0
    assert wave.mix == "between_class" and recipe.augment.mixup_prob == 0.0
    assert wave.crop_s == crop
    assert (wave.pitch_prob > 0) == pitch
    # Sec. 4.1: Adam, batch 32, EMA 0.999; one-cycle 1e-3 for AudioSet, constant 2e-4 / 1e-4 otherwise.
    training = recipe.training
    assert (training.optimizer, recipe.data.batch_size, training.ema_decay) == ("adam", 32, 0.999)
    assert training.learning_rate == learning_rate
    assert training.schedule.name == ("one_cycle" if name.startswith("audioset") else "constant")
    assert bool(training.init_from) == fine_tuned
    if name.startswith("audioset"):
        assert recipe.data.sampling == "balanced" and training.loss.name == "binary_crossentropy"
        assert training.steps_per_epoch * training.epochs == 500_000  # Sec. 4.2: 500k iterations


def test_dcase2020_1b_recipe_has_the_papers_settings():
    recipe = load_recipe(RECIPES / "dcase2020_1b.yaml")
    # Sec. 6.1: 48 kHz stereo 10 s clips, 256 log-mel bins, Adam, 350 epochs in three phases.
    assert (recipe.data.sample_rate, recipe.data.channels, recipe.data.duration_s) == (48000, 2, 10.0)
    assert recipe.features.n_mels == 256 and recipe.data.options == {"fold": 1}
    assert recipe.training.optimizer == "adam" and recipe.training.epochs == 350
    phases = recipe.training.schedule.phases
    assert [(p.epochs, p.start, p.end, p.shape) for p in phases] == [
        (50, 1e-4, None, "constant"), (200, 1e-4, 1e-6, "exponential"), (100, 1e-6, None, "constant")]
    assert sum(p.epochs for p in phases) == recipe.training.epochs
    # Table 1 with c=64, S=2, N=3; Sec. 4 loss; Sec. 3 augmentation; Sec. 5.1 pruning.
    assert recipe.model.name == "shared_resnet"
    assert recipe.model.options == {"channels": 64, "sub_bands": 2, "repeats": 3}
    assert recipe.training.loss.name == "cb_focal"
    assert recipe.augment.freqmix_prob > 0 and recipe.augment.cutmix_prob > 0 and recipe.augment.mixup_prob > 0
    assert recipe.augment.freqmix_alpha == 1.0
    assert recipe.stages == ("train", "prune", "qat", "export")
    prune = recipe.compress.prune
    assert (prune.target_sparsity, prune.mode, prune.epochs) == (0.6, "global", 200)
    assert (prune.learning_rate, prune.final_learning_rate) == (1e-4, 1e-6)
    assert recipe.evaluate.held_out_groups == ("milan",)


@pytest.mark.slow
def test_dcase2020_1b_recipe_runs_end_to_end_on_synthesized_data(tmp_path):
    out = tmp_path / "run"
    overrides = {
        "data.root": str(tmp_path / "data"), "data.cache_dir": str(tmp_path / "cache"),
        "data.synthesize": "{clips: 36, seed: 1, sample_rate: 8000, duration_s: 1.0, channels: 2}",
        "data.sample_rate": 8000, "data.duration_s": 1.0, "data.batch_size": 8,
        "features.n_fft": 256, "features.hop_length": 128, "features.n_mels": 32, "features.fmax": 4000,
        "model.channels": 4, "training.epochs": 2,
        "training.schedule.phases": "[{epochs: 1, start: 1.0e-3}, {epochs: 1, start: 1.0e-3, end: 1.0e-4, shape: exponential}]",
        "compress.prune.epochs": 1, "compress.qat.epochs": 1,
        "export.representative_examples": 8, "export.verify_examples": 3, "export.smallest_arena": False,
        "output.tensorboard": False,
    }
    assert run_shipped_recipe("dcase2020_1b.yaml", out, overrides) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "shared_resnet"
    assert set(report["metrics"]["per_class_accuracy"]) == {"indoor", "outdoor", "transportation"}
    assert "milan" in report["held_out"] and report["data"]["held_out_examples"]["milan"] > 0
    assert report["prune"]["sparsity"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    deploy = report["deploy"]
    assert deploy["tflm"]["bit_exact"]
    # Export form: shared kernels stored once on flash, every op full-integer (no float MUL/ADD pairs).
    assert deploy["sharing"]["stored_once"]
    assert "DEQUANTIZE" not in deploy["ops"] and "MUL" not in deploy["ops"]
    assert (out / "plots" / "confusion_matrix.png").is_file()
    assert_ran_on_the_emulated_cores(deploy, pcm=True)  # log-mel from PCM through frontend.c


@pytest.mark.slow
def test_waveform_recipe_runs_end_to_end_bit_exact_from_pcm(tmp_path):
    """features.kind: waveform: PCM samples in, train → prune → QAT → int8, bit-exact in TFLite Micro."""
    out = tmp_path / "run"
    overrides = {
        "data.root": str(tmp_path / "data"), "data.cache_dir": str(tmp_path / "cache"),
        "data.synthesize": "{clips: 36, seed: 2, sample_rate: 8000, duration_s: 1.0, channels: 2}",
        "data.sample_rate": 8000, "data.duration_s": 1.0, "data.channels": 1, "data.batch_size": 8,
        "model.sample_rate": 8000, "model.stem_filters": 8, "model.width": 4, "model.blocks": 2,
        "training.epochs": 2, "compress.prune.epochs": 1, "compress.qat.epochs": 1,
        "export.representative_examples": 8, "export.verify_examples": 4, "export.smallest_arena": False,
        "output.tensorboard": False, "augment.mixup_prob": 0.5,
    }
    assert run_shipped_recipe("quickstart_waveform.yaml", out, overrides) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["input_shape"] == [8000, 1] and report["data"]["features"] == "waveform"
    assert report["prune"]["sparsity"]["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert report["deploy"]["tflm"]["bit_exact"] and report["deploy"]["tflm"]["examples"] == 4
    assert_ran_on_the_emulated_cores(report["deploy"], pcm=True)  # raw PCM, no front end
    config = (out / "deploy" / "model_config.h").read_text()
    assert "kFeatureNMels" not in config and "constexpr int kFeatureClipSamples = 8000;" in config

    # The header's one multiply-add from int16 PCM to the int8 input, against the arithmetic done here
    # from the run's standardization and the flatbuffer's own input quantization.
    constants = dict(re.findall(r"constexpr float (kPcmToInput\w+) = ([-0-9.e+]+)f;", config))
    mean, std = (json.loads((out / "normalization.json").read_text())[key] for key in ("mean", "std"))
    input_q, _ = io_quantization((out / "deploy" / "model_int8.tflite").read_bytes())
    pcm = np.array([-32768, -1000, 0, 1000, 32767], np.float64)
    expected = np.clip(np.round((pcm / 32768 - mean) / std / input_q.scale) + input_q.zero_point, -128, 127)
    header = np.clip(np.round(pcm * float(constants["kPcmToInputScale"]) + float(constants["kPcmToInputOffset"])), -128, 127)
    assert np.abs(header - expected).max() <= 1


def test_search_dcase2020_1b_recipe_has_the_papers_settings():
    recipe = load_recipe(RECIPES / "search_dcase2020_1b.yaml")
    features = recipe.features
    # Sec. 4.2: scalogram, 2048-point FFT, 25 ms window, 10 ms hop at 48 kHz, Kymatio support 2048,
    # maximum scale 1024, 16 wavelets per octave, 128 bins, average/difference, 128-frame segments.
    assert (recipe.data.sample_rate, recipe.data.channels, recipe.data.duration_s) == (48000, 2, 10.0)
    assert (features.kind, features.n_fft, features.win_length, features.hop_length) == ("scalogram", 2048, 1200, 480)
    assert (features.scalogram_bins, features.wavelets_per_octave, features.wavelet_max_scale) == (128, 16, 1024)
    assert features.channel_mode == "mid_side" and features.segment_frames == 128
    # Sec. 4.3: the final model 60 epochs, Adam 1e-3 x0.5 every 4 epochs, weight decay 0.0015, BCE, mixup.
    training = recipe.training
    assert (training.epochs, training.optimizer, training.learning_rate, training.weight_decay) == (60, "adam", 1e-3, 0.0015)
    schedule = training.schedule
    assert list(schedule.boundaries) == list(range(4, 60, 4))
    assert schedule.values == pytest.approx([1e-3 * 0.5**i for i in range(15)])
    assert training.loss.name == "binary_crossentropy" and recipe.augment.mixup_prob == 1.0
    assert recipe.model.name == "wu_lee_b"
    # Sec. 3.3 / 4.3 / 4.4: 510 candidates, 250-500 KB, 3 epochs x0.1 per epoch, models A and B.
    search = recipe.search
    assert search.candidates == 510
    assert (search.limits.min_paper_size_bytes, search.limits.max_paper_size_bytes) == (250_000, 500_000)
    assert (search.training.epochs, search.training.learning_rate, search.training.weight_decay) == (3, 1e-3, 0.0015)
    assert search.training.schedule.values == pytest.approx([1e-3, 1e-4, 1e-5])
    assert search.training.loss.name == "binary_crossentropy" and search.augment.mixup_prob == 1.0
    assert search.retrain == ("accuracy", "loss")
    assert search.space.blocks == (2, 3, 4) and search.space.stem_filters == (4, 128)
    assert search.space.growth_ratios == (1.0, 1.25, 1.5, 1.75, 2.0)


@pytest.mark.slow
def test_search_dcase2020_1b_recipe_trains_model_b_end_to_end_on_synthesized_data(tmp_path):
    """Scalogram + segments + sigmoid outputs + model B + QAT + int8 export, on 1 s stereo clips at 8 kHz."""
    out = tmp_path / "run"
    overrides = {
        "data.root": str(tmp_path / "data"), "data.cache_dir": str(tmp_path / "cache"),
        "data.synthesize": "{clips: 24, seed: 2, sample_rate: 8000, duration_s: 1.0, channels: 2}",
        "data.sample_rate": 8000, "data.duration_s": 1.0, "data.batch_size": 8,
        "features.n_fft": 256, "features.win_length": 200, "features.hop_length": 80,
        "features.wavelet_max_scale": 256, "features.scalogram_bins": 32, "features.segment_frames": 32,
        "training.epochs": 1, "training.schedule": "{name: constant}", "compress.qat.epochs": 1,
        "export.representative_examples": 8, "export.verify_examples": 6, "export.smallest_arena": False,
        "output.tensorboard": False, "output.plots": False,
    }
    assert run_shipped_recipe("search_dcase2020_1b.yaml", out, overrides) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "wu_lee_b" and report["model"]["input_shape"] == [32, 32, 2]
    assert report["data"]["segments_per_clip"] == 3 and report["data"]["outputs"] == "sigmoid"
    assert report["deploy"]["tflm"]["bit_exact"]
    assert report["deploy"]["metrics"]["examples"] == report["metrics"]["examples"]  # clips, not segments
    config = (out / "deploy" / "model_config.h").read_text()
    assert "kFeatureScalogramBins = 32" in config and "kSegmentFrames = 32" in config


def test_esc50_aclnet_recipe_has_the_papers_settings():
    recipe = load_recipe(RECIPES / "esc50_aclnet.yaml")
    # Sec. 3.1: 16 kHz, the whole 5 s clip at test time, the five official folds.
    assert (recipe.data.dataset, recipe.data.sample_rate, recipe.data.duration_s) == ("esc50", 16000, 5.0)
    assert (recipe.crossval.option, recipe.crossval.folds) == ("eval_fold", (1, 2, 3, 4, 5))
    # Sec. 4.2's best DWSC front-end; Sec. 2.2 dropout.
    assert recipe.model.name == "aclnet"
    assert {k: recipe.model.options[k] for k in ("c1", "s1", "s2", "conv_type", "dropout")} == {
        "c1": 16, "s1": 2, "s2": 4, "conv_type": "dwsc", "dropout": 0.2}
    # Sec. 3.2: 2 s window, standardize, speed uniform in [0.8, 1.25], 1.5 s crop, +-6 dB gain.
    wave = recipe.augment.waveform
    assert (wave.window_s, wave.standardize, wave.crop_s) == (2.0, True, 1.5)
    assert (wave.speed_prob, wave.speed_range, wave.speed_distribution) == (1.0, (0.8, 1.25), "uniform")
    assert (wave.gain_prob, wave.gain_db) == (1.0, (-6.0, 6.0))
    assert recipe.features.normalization == "per_clip"
    # Sec. 3.3-3.4: mixup alpha 0.1 after 100 epochs; SGD 0.9, 2e-4, batch 64, 0.2 / 0.04 / 0.016.
    augment = recipe.augment
    assert (augment.mixup_prob, augment.mixup_alpha, augment.mixup_warmup_epochs) == (1.0, 0.1, 100)
    training = recipe.training
    assert (training.optimizer, training.momentum, training.weight_decay, recipe.data.batch_size) == ("sgd", 0.9, 2e-4, 64)
    schedule = training.schedule
    assert (schedule.name, schedule.boundaries, schedule.values) == ("piecewise_constant", (500, 1500), (0.2, 0.04, 0.016))
    assert training.epochs == 2000 and training.learning_rate == 0.2


def write_esc50(root: Path, *, classes: int = 3, folds: int = 5, sample_rate: int = 8000) -> Path:
    """The ESC-50 layout: ``meta/esc50.csv`` and ``audio/{fold}-{src}-A-{target}.wav``, one tone per class."""
    import soundfile

    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    t = np.arange(int(0.6 * sample_rate)) / sample_rate
    for fold in range(1, folds + 1):
        for target in range(classes):
            for take in "AB":
                source = f"{fold}{target}{take}"
                name = f"{fold}-{source}-{take}-{target}.wav"
                tone = 0.3 * np.sin(2 * np.pi * (400 + 700 * target) * t) + 0.05 * rng.normal(size=t.size)
                soundfile.write(root / "audio" / name, tone, sample_rate, subtype="PCM_16")
                rows.append(f"{name},{fold},{target},class{target},False,{source},{take}")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_esc50_aclnet_recipe_runs_crossval_on_synthesized_esc50_data(tmp_path):
    """The shipped recipe through ``python -m tfasc.crossval`` (tiny: 8 kHz, 0.6 s clips, 0.5 s windows,
    0.4 s crops, fold 2 held out, two epochs, no QAT), its int8 model bit-exact in TFLite Micro."""
    from tfasc.crossval import main as crossval_main

    root = write_esc50(tmp_path / "ESC-50-master")
    overrides = {
        "data.root": str(root), "data.cache_dir": str(tmp_path / "cache"), "data.sample_rate": 8000,
        "data.duration_s": 0.6, "data.batch_size": 8, "model.sample_rate": 8000, "model.width_multiplier": 0.125,
        "model.llf_filters": 16, "augment.waveform.window_s": 0.5, "augment.waveform.crop_s": 0.4,
        "augment.mixup_warmup_epochs": 1, "training.epochs": 2, "training.learning_rate": 0.01,
        "training.schedule": "{name: constant}", "export.verify_examples": 6,
        "stages": "[train, export]",  # QAT of AclNet: tests/deploy/test_raw_pcm.py
        "export.representative_examples": 8, "export.smallest_arena": "false", "crossval.folds": "[2]",
        "output.dir": str(tmp_path / "runs"), "output.tensorboard": "false", "output.plots": "false",
    }
    argv = [str(RECIPES / "esc50_aclnet.yaml"), "--out", str(tmp_path / "cv")]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    assert crossval_main(argv) == 0
    summary = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert summary["finished"] == [2]
    report = json.loads((tmp_path / "cv" / "fold-2" / "report.json").read_text())
    deploy = report["deploy"]
    assert deploy["tflm"]["bit_exact"] and deploy["tflm"]["examples"] == 6
    assert report["data"]["classes"] == ["class0", "class1", "class2"]
    assert report["data"]["eval_examples"] == 6  # fold 2: 3 classes x 2 takes
    assert set(deploy["ops"]) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "TRANSPOSE"}
    # Trained on 0.4 s crops, the int8 model takes the whole 0.6 s clip: 4,800 int8 samples.
    tflite = next((tmp_path / "cv" / "fold-2" / "deploy").glob("*.tflite")).read_bytes()
    assert io_quantization(tflite)[0].shape == (1, 4800, 1)


@pytest.mark.slow
def test_audioset_erann_recipe_tags_synthesized_audioset_to_a_verified_int8_bundle(tmp_path):
    # The shipped recipe (44.1 kHz log-mel, balanced sampling, crops, SpecAugment, between-class mixing,
    # EMA, one-cycle) on a small AudioSet layout of multi-label tone/noise clips, at W = 0.25 with QAT.
    from support.audioset_layout import write_audioset_layout

    write_audioset_layout(tmp_path / "audioset", unbalanced_clips=64, balanced_clips=16, eval_clips=24, seed=2)
    out = tmp_path / "run"
    status = run_shipped_recipe("audioset_erann.yaml", out, {
        "stages": "[train, qat, export]", "data.root": tmp_path / "audioset", "data.cache_dir": tmp_path / "cache",
        "data.duration_s": 1.0, "data.batch_size": 16, "augment.waveform.crop_s": 0.75,
        "augment.time_mask_width": 8, "model.widening": 0.25, "training.steps_per_epoch": 8,
        "training.epochs": 6, "training.learning_rate": 3.0e-3, "training.ema_decay": 0.9,
        "compress.qat.epochs": 1, "export.representative_examples": 16, "export.verify_examples": 4,
        "output.tensorboard": "false", "output.plots": "false"})
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    deploy = report["deploy"]
    assert report["data"]["outputs"] == "sigmoid" and report["data"]["sampling"] == "balanced"
    assert deploy["tflm"]["bit_exact"] is True
    assert {"mAP", "mean_auc", "d_prime"} <= set(deploy["metrics"])
    assert {"CONV_2D", "LEAKY_RELU", "ADD", "PAD", "DEPTHWISE_CONV_2D"} <= set(deploy["ops"])
    # The bundle states what the device pays: flash (the flatbuffer's bytes), arena and MACs.
    int8_bytes = (out / deploy["files"]["int8"]["path"]).stat().st_size
    arena = int(re.search(r"kTensorArenaSize = (\d+);", (out / "deploy" / "model_config.h").read_text()).group(1))
    readme = (out / "deploy" / "README.md").read_text()
    assert f"{int8_bytes:,} bytes of flash" in readme and f"{arena:,}-byte tensor arena" in readme
    assert f"{deploy['profile']['macs']:,} multiply-accumulates per inference" in readme


def test_audioset_wave_resnet_recipe_has_the_papers_settings():
    recipe = load_recipe(RECIPES / "audioset_wave_resnet.yaml")
    model = recipe.model.options
    # Sec. 4.1 / 4.2: 10 s of 16 kHz raw waveform; balanced batches of 256 (Table 3).
    assert (recipe.data.sample_rate, recipe.data.duration_s, recipe.data.channels) == (16000, 10.0, 1)
    assert recipe.features.kind == "waveform" and recipe.data.sampling == "balanced"
    assert recipe.data.batch_size == 256
    # Sec. 3.1 / 4.2 / Fig. 1: 1-D ResNet-18 to 128 x 2500, 2-D ResNet-50, attention after blocks 2-4, FC 600.
    assert recipe.model.name == "wave_resnet"
    assert (model["wave_channels"], 160_000 // model["wave_stride"]) == (128, 2500)
    assert sum(model["wave_blocks"]) * 2 + 2 == 18 and sum(model["blocks"]) * 3 + 2 == 50
    assert (model["levels"], model["attention_units"]) == ([2, 3, 4], 600)
    # Sec. 3.2 / 4.2: mix-training at a ratio in (0.4, 0.6), Eq. 3's sigmoid cross-entropy, Adam 3e-4, then
    # fine-tuning on the raw data at 3e-5.
    assert recipe.stages == ("mix_train", "finetune", "export")
    assert recipe.mix_train.ratio == (0.4, 0.6)
    assert (recipe.training.optimizer, recipe.training.learning_rate, recipe.training.schedule.name) == (
        "adam", 3e-4, "constant")
    assert recipe.training.loss.name == "binary_crossentropy"
    assert (recipe.finetune.learning_rate, recipe.finetune.final_learning_rate) == (3e-5, None)


@pytest.mark.slow
def test_audioset_wave_resnet_recipe_compares_strategies_and_ends_in_a_verified_int8_bundle(tmp_path):
    # The shipped recipe at a tiny size on synthesized multi-label AudioSet clips: plain training, mix-training,
    # fine-tuning, QAT of the multi-level model, int8 from raw int8 samples to tags in TFLite Micro.
    from support.audioset_layout import write_audioset_layout

    write_audioset_layout(tmp_path / "audioset", unbalanced_clips=48, balanced_clips=16, eval_clips=24, seed=3)
    out = tmp_path / "run"
    status = run_shipped_recipe("audioset_wave_resnet.yaml", out, {
        "stages": "[train, mix_train, finetune, qat, export]", "data.root": tmp_path / "audioset",
        "data.cache_dir": tmp_path / "cache", "data.duration_s": 1.0, "data.batch_size": 16,
        "model.wave_channels": 16, "model.wave_widths": "[8, 8, 16, 16]", "model.wave_blocks": "[1, 1, 1, 1]",
        "model.stem_filters": 8, "model.widths": "[4, 8, 8, 8]", "model.blocks": "[1, 1, 1, 1]",
        "model.expansion": 2, "model.attention_units": 16, "training.learning_rate": 3.0e-3,
        "training.steps_per_epoch": 6, "training.epochs": 2, "finetune.epochs": 1, "finetune.learning_rate": 3.0e-4,
        "compress.qat.epochs": 1, "export.representative_examples": 16, "export.verify_examples": 4,
        "output.tensorboard": "false", "output.plots": "false"})
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["outputs"] == "sigmoid" and report["data"]["sampling"] == "balanced"
    rows = report["finetune"]["comparison"]
    assert [row["stage"] for row in rows] == ["train", "mix_train", "finetune"]
    assert all({"mAP", "mean_auc", "d_prime"} <= set(row["metrics"]) for row in rows)
    assert report["mix_train"]["ratio"] == [0.4, 0.6] and report["finetune"]["source"] == "mix_trained.keras"
    deploy = report["deploy"]
    assert deploy["tflm"]["bit_exact"] is True
    # The attention and the mean of the levels' predictions lower to ops TFLite Micro runs in int8.
    assert {"SOFTMAX", "LOGISTIC", "LOG_SOFTMAX", "MEAN", "CONV_2D"} <= set(deploy["ops"])
    tflite = (out / deploy["files"]["int8"]["path"]).read_bytes()
    assert io_quantization(tflite)[0].shape == (1, 16000, 1)  # raw int8 samples in
    readme = (out / "deploy" / "README.md").read_text()
    arena = int(re.search(r"kTensorArenaSize = (\d+);", (out / "deploy" / "model_config.h").read_text()).group(1))
    assert f"{len(tflite):,} bytes of flash" in readme and f"{arena:,}-byte tensor arena" in readme
    assert f"{deploy['profile']['macs']:,} multiply-accumulates per inference" in readme
    markdown = (out / "report.md").read_text()
    assert "Training strategies compared" in markdown and "mix-training without fine-tuning" in markdown
