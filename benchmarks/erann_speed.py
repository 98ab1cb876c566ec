"""ERANN inference speed against the decreasing temporal size parameter s_m (Table 4), on this CPU.

Run: ``python benchmarks/erann_speed.py [--widening 1] [--classes 527] [--repeats 21] [--quick] [--json OUT]``.

Verbitskiy et al. 2022, Table 4, times ERANN-s_m-6 (s_m = 0..3, W = 6) on a V100 as 10-second clips
classified per second at batch 1 and batch 32 (the feature extraction is not part of it). This script
builds ERANN-s_m-W for s_m = 0, 1, 2, 3 at one small W (default 1; 527 AudioSet classes) and times all
four side by side in one run, on random log-mel input of one 10 s clip at the paper's 44.1 kHz / hop 345:
128 mels x 1280 frames (Eq. 1). Each model and batch size runs a ``tf.function`` with a fixed input
signature in inference mode (``training=False``); every (model, batch) is warmed up first, then the
repeats interleave the models (their order rotates each repeat) and the median repeat is reported.
One B = 1 measurement is ``--b1-calls`` consecutive single-clip calls; one B = 32 measurement is one
call on 32 clips. Prints per s_m: parameters, MACs per 10 s clip (tfasc.deploy.profile.count_macs of
the 1280-frame model), clips/s at B = 1 and B = 32, the speed ratio vs s_m = 0, and the ratio Table 4
gives (V100, W = 6). Absolute speeds are not comparable to the paper's (another device, another W);
the ratios are what is reproduced.

It is also a check of Sec. 3.2's claim that a larger s_m makes the model faster: it prints whether
clips/s increase monotonically with s_m at each batch size, and exits with status 1 if s_m = 3 is not
faster than s_m = 0 at B = 32. (Table 4 itself is not monotone at B = 1: ERANN-3-6 79 < ERANN-2-6 82.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tfasc  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfasc import models  # noqa: E402
from tfasc.compress.graph import with_input_shape  # noqa: E402
from tfasc.deploy.profile import count_macs  # noqa: E402

MELS = 128
FRAMES = 1280  # 10 s at 44.1 kHz, hop 345, padded to 128 t (Eq. 1)
TEMPORAL_PARAMS = (0, 1, 2, 3)
#: Table 4 (V100, W = 6): audios per second at B = 1 and B = 32 for ERANN-s_m-6.
TABLE_4 = {0: (53, 74), 1: (71, 108), 2: (82, 124), 3: (79, 128)}


def paper_ratios(s_m: int) -> tuple[float, float]:
    return tuple(TABLE_4[s_m][i] / TABLE_4[0][i] for i in (0, 1))


def inference_fn(model: keras.Model, batch: int):
    spec = tf.TensorSpec([batch, MELS, FRAMES, 1], tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def is_monotone(values) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widening", type=float, default=1.0, help="W of every model (Table 4: 6)")
    parser.add_argument("--classes", type=int, default=527, help="output classes (AudioSet: 527)")
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats per (model, batch)")
    parser.add_argument("--batch", type=int, default=32, help="the large batch size (Table 4: 32)")
    parser.add_argument("--b1-calls", type=int, default=8, help="single-clip calls per B = 1 measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per (model, batch) first")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 2 calls per B = 1 measurement")
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.b1_calls, args.warmup = 3, 2, 1
    batches = (1, args.batch)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Random "log-mel" in a dB-like range; the values do not matter for speed (no NaN, no denormals).
    inputs = {b: tf.constant(rng.uniform(-80.0, 0.0, size=(b, MELS, FRAMES, 1)).astype(np.float32))
              for b in batches}

    rows = {}
    fns = {}
    for s_m in TEMPORAL_PARAMS:
        model = models.build("erann", (MELS, None, 1), args.classes, widening=args.widening, temporal_param=s_m)
        macs = count_macs(with_input_shape(model, (MELS, FRAMES, 1))).macs
        rows[s_m] = dict(params=model.count_params(), macs=macs)
        for b in batches:
            fns[s_m, b] = inference_fn(model, b)
            for _ in range(args.warmup):  # tracing, allocation, oneDNN primitive caches
                fns[s_m, b](inputs[b]).numpy()

    clips = {1: args.b1_calls, args.batch: args.batch}
    calls = {1: args.b1_calls, args.batch: 1}
    seconds = {key: [] for key in fns}
    order = list(TEMPORAL_PARAMS)
    start_all = time.perf_counter()
    for repeat in range(args.repeats):
        rotated = order[repeat % len(order):] + order[:repeat % len(order)]
        for s_m in rotated:
            for b in batches:
                fn, x = fns[s_m, b], inputs[b]
                start = time.perf_counter()
                for _ in range(calls[b]):
                    fn(x).numpy()
                seconds[s_m, b].append(time.perf_counter() - start)
    timed_s = time.perf_counter() - start_all

    for s_m in TEMPORAL_PARAMS:
        for b in batches:
            rows[s_m][f"clips_per_s_b{b}"] = clips[b] / statistics.median(seconds[s_m, b])
    for s_m in TEMPORAL_PARAMS:
        for b in batches:
            rows[s_m][f"ratio_b{b}"] = rows[s_m][f"clips_per_s_b{b}"] / rows[0][f"clips_per_s_b{b}"]
        rows[s_m]["paper_ratio_b1"], rows[s_m]["paper_ratio_b32"] = paper_ratios(s_m)

    big = args.batch
    print(f"ERANN-s_m-W, W = {args.widening:g}, {args.classes} classes, input [B, {MELS}, {FRAMES}, 1] "
          f"(10 s at 44.1 kHz / hop 345), CPU, {os.cpu_count()} logical cores visible")
    print(f"median of {args.repeats} interleaved repeats; B = 1: {args.b1_calls} calls per measurement, "
          f"B = {big}: 1 call of {big} clips per measurement; timed part {timed_s:.0f} s")
    header = (f"{'s_m':>3} {'params M':>9} {'GMACs/clip':>10} {'clips/s B=1':>12} {f'clips/s B={big}':>13} "
              f"{'ratio B=1':>10} {f'ratio B={big}':>11} {'paper B=1':>10} {'paper B=32':>11}")
    print(header)
    print("-" * len(header))
    for s_m in TEMPORAL_PARAMS:
        r = rows[s_m]
        print(f"{s_m:>3} {r['params'] / 1e6:>9.3f} {r['macs'] / 1e9:>10.3f} {r['clips_per_s_b1']:>12.1f} "
              f"{r[f'clips_per_s_b{big}']:>13.1f} {r['ratio_b1']:>10.2f} {r[f'ratio_b{big}']:>11.2f} "
              f"{r['paper_ratio_b1']:>10.2f} {r['paper_ratio_b32']:>11.2f}")
    print("(paper: Table 4, ERANN-s_m-6 on a V100; ratios = audios/s vs ERANN-0-6)")

    monotone = {}
    for b in batches:
        speeds = [rows[s][f"clips_per_s_b{b}"] for s in TEMPORAL_PARAMS]
        monotone[b] = is_monotone(speeds)
        verdict = "increase monotonically" if monotone[b] else "do NOT increase monotonically"
        print(f"B = {b}: clips/s {verdict} with s_m = 0..3 ({', '.join(f'{v:.1f}' for v in speeds)})")
    faster = rows[3][f"clips_per_s_b{big}"] > rows[0][f"clips_per_s_b{big}"]
    print(f"check: s_m = 3 faster than s_m = 0 at B = {big}: {'PASS' if faster else 'FAIL'} "
          f"({rows[3][f'ratio_b{big}']:.2f}x)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(widening=args.widening, classes=args.classes, frames=FRAMES, mels=MELS,
                           repeats=args.repeats, b1_calls=args.b1_calls, batch=big,
                           rows={str(s): r for s, r in rows.items()},
                           monotone={str(b): m for b, m in monotone.items()}, check_passed=faster), f, indent=2)
    return 0 if faster else 1


if __name__ == "__main__":
    sys.exit(main())
