"""Training on several devices or machines with TensorFlow's own ``tf.distribute``.

A recipe's ``distribute`` section picks the strategy (:func:`make_distribution`):

* ``default``: one device (``tf.distribute.get_strategy()``, nothing changes);
* ``mirrored``: ``tf.distribute.MirroredStrategy`` over this machine's devices;
* ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the workers named in the
  recipe (``distribute.workers`` + ``worker_index``, or ``--worker i/N --workers ...``) or in
  ``TF_CONFIG``. Worker 0 is the chief: it alone writes the run directory, the report and the bundle.

The global batch is the recipe's ``data.batch_size`` on any number of replicas. Each replica builds
its own slice of every global batch (:func:`distributed_dataset`): replica ``r`` of ``R`` gathers
rows ``[r B / R, (r + 1) B / R)`` of the batch's example indices, so no worker reads (or decodes,
augments, transforms) another's examples. The per-example waveform augmentation is keyed by the
example's position in the global batch, so it is what one device draws; what is drawn for a batch
as a whole (mixup, FreqMix, CutMix and waveform mixing partners, SpecAugment masks) is drawn per
replica slice, from the batch's seed folded with the slice, as per-device mixup does on several
GPUs. Keras averages the replicas' gradients, each the mean over ``B / R`` examples, which is the
global batch's mean; with BatchNorm synchronized (``distribute.sync_batchnorm``) and without batch
augmentation the training is the single-device one up to float summation order. With several
replicas a pass over the data holds full batches only (one device keeps a short last batch), so a
run resumes on the same number of replicas (:mod:`tfasc.training.rundir` refuses another).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import tfasc  # noqa: F401
import tensorflow as tf

from tfasc.config.load import RecipeError
from tfasc.errors import UserError

#: One replica's share of every global batch: ``(index, count)``.
Part = tuple[int, int]
WHOLE: Part = (0, 1)


@dataclass(frozen=True)
class Distribution:
    """The strategy the training stages run under and this process's role in it."""

    strategy: Any
    """A ``tf.distribute.Strategy``."""
    kind: str
    """``default``, ``mirrored`` or ``multi_worker``."""
    worker_index: int = 0
    num_workers: int = 1

    @property
    def chief(self) -> bool:
        """Whether this process writes the run directory (worker 0, or the only process)."""
        return self.worker_index == 0

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def distributed(self) -> bool:
        return self.kind != "default"

    def describe(self) -> str:
        if self.kind == "default":
            return "one device"
        devices = ", ".join(self.strategy.extended.worker_devices)
        if self.kind == "mirrored":
            return f"MirroredStrategy, {self.replicas} replicas ({devices})"
        return (f"MultiWorkerMirroredStrategy, worker {self.worker_index} of {self.num_workers}"
                f"{' (chief)' if self.chief else ''}, {self.replicas} replicas in all")

    def to_json(self) -> dict:
        return {"strategy": self.kind, "replicas": self.replicas, "workers": self.num_workers}


def parse_worker(text: str) -> tuple[int, int]:
    """``"i/N"`` (``--worker``) as ``(i, N)``; a :class:`RecipeError` unless ``0 <= i < N``."""
    index, slash, count = str(text).partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit() or not 0 <= int(index) < int(count):
        raise RecipeError(f"--worker {text}: expected i/N with 0 <= i < N, e.g. 0/2 on the chief and 1/2 on the other")
    return int(index), int(count)


def worker_overrides(worker: str | None, workers: str | None) -> list[str]:
    """``--set`` style overrides for ``--worker i/N --workers host:port,...`` (both or neither)."""
    if worker is None and workers is None:
        return []
    if worker is None or workers is None:
        raise RecipeError("--worker and --workers go together: --worker 0/2 --workers host1:port,host2:port")
    index, count = parse_worker(worker)
    addresses = [address.strip() for address in workers.split(",") if address.strip()]
    if len(addresses) != count:
        raise RecipeError(f"--workers: {len(addresses)} addresses for the {count} workers of --worker {worker}")
    return ["distribute.strategy=multi_worker", f"distribute.workers={json.dumps(addresses)}",
            f"distribute.worker_index={index}"]


def split_cpu(count: int) -> None:
    """Make the host CPU ``count`` logical devices (``/cpu:0 .. /cpu:{count - 1}``); must come before
    TensorFlow initializes its devices (the first op of the process)."""
    cpus = tf.config.list_physical_devices("CPU")
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    if tf.config.get_logical_device_configuration(cpus[0]) == wanted:
        return
    try:
        tf.config.set_logical_device_configuration(cpus[0], wanted)
    except RuntimeError as error:
        raise RecipeError(f"distribute.cpu_devices: {count}: TensorFlow's devices were already set up in this "
                          "process; set it in the recipe of the first run of the process") from error


def _cluster_resolver(config):
    """The multi-worker cluster: the recipe's ``workers`` or ``TF_CONFIG``."""
    if config.workers:
        spec = tf.train.ClusterSpec({"worker": list(config.workers)})
        return tf.distribute.cluster_resolver.SimpleClusterResolver(
            spec, task_type="worker", task_id=config.worker_index, rpc_layer="grpc")
    if not os.environ.get("TF_CONFIG"):
        raise RecipeError("distribute.strategy: multi_worker needs the workers: set distribute.workers and "
                          "worker_index, pass --worker i/N --workers host:port,..., or set TF_CONFIG")
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        resolver.cluster_spec()
    except (ValueError, KeyError, TypeError) as error:
        raise RecipeError(f"TF_CONFIG: {error}") from error
    if resolver.task_type not in ("worker", "chief"):
        raise RecipeError(f"TF_CONFIG: task type {resolver.task_type!r}: expected worker (or chief)")
    return resolver


@functools.lru_cache(maxsize=None)
def make_distribution(config) -> Distribution:
    """The ``Distribution`` of a recipe's ``distribute`` section (a ``DistributeConfig``).

    One per process and configuration: TensorFlow allows one multi-worker server per process, so
    several runs in one process (cross-validation folds) share it.
    """
    if config.cpu_devices:
        split_cpu(config.cpu_devices)
    if config.strategy == "default":
        return Distribution(tf.distribute.get_strategy(), "default")
    if config.strategy == "mirrored":
        devices = list(config.devices) or None
        known = {device.name.lower().replace("/device:", "/") for device in tf.config.list_logical_devices()}
        for device in config.devices:
            name = device.lower().replace("/device:", "/")
            name = name if name.startswith("/job:") else f"/job:localhost/replica:0/task:0{name}"
            if name not in known:
                raise RecipeError(f"distribute.devices: {device!r} is not a device of this machine; it has "
                                  f"{', '.join(sorted(d.rpartition('task:0')[2] for d in known))}")
        if devices is None and not tf.config.list_logical_devices("GPU"):
            devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        return Distribution(tf.distribute.MirroredStrategy(devices), "mirrored")
    resolver = _cluster_resolver(config)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    jobs = resolver.cluster_spec().as_dict()
    workers = len(jobs.get("worker", [])) + len(jobs.get("chief", []))
    # With a "chief" task in TF_CONFIG, worker k is the (k + 1)-th process.
    index = resolver.task_id + (1 if resolver.task_type == "worker" and "chief" in jobs else 0)
    return Distribution(strategy, "multi_worker", worker_index=index, num_workers=workers)


def local_worker_addresses(count: int) -> str:
    """``--workers`` for ``count`` workers on this machine: ``127.0.0.1:<port>,...`` on ports free now
    (to try multi-worker training on one machine, as the tests and ``benchmarks/pipeline.py`` do)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    finally:
        for s in sockets:
            s.close()


def check_batch(batch_size: int, distribution: Distribution) -> None:
    """The global batch must split evenly over the replicas (each replica's share is equal)."""
    if batch_size % distribution.replicas:
        raise RecipeError(f"data.batch_size: {batch_size} does not split evenly over the {distribution.replicas} "
                          f"replicas of {distribution.describe()}; use a multiple of {distribution.replicas}")


def check_examples(examples: int, batch_size: int, distribution: Distribution) -> None:
    """With several replicas a pass holds full batches only: the training split must fill one."""
    if distribution.replicas > 1 and examples < batch_size:
        raise RecipeError(f"data.batch_size: {batch_size} is more than the {examples} training examples; on several "
                          "replicas every batch is full: use a smaller batch")


def replica_parts(input_context) -> list[Part]:
    """The parts of the global batch this input pipeline (one per worker) builds: one per local replica,
    in the order ``tf.distribute`` hands consecutive elements to them."""
    total = int(input_context.num_replicas_in_sync)
    local = total // int(input_context.num_input_pipelines)
    first = int(input_context.input_pipeline_id) * local
    return [(first + replica, total) for replica in range(local)]


def distributed_dataset(strategy, make_part: Callable[[Part], tf.data.Dataset]):
    """``make_part(part)`` (a dataset of one replica's slices of the global batches) for every replica of
    ``strategy``: the plain dataset of whole batches on one replica, else a ``tf.distribute``
    distributed dataset (each worker builds only its own replicas' parts)."""
    if strategy.num_replicas_in_sync == 1:
        return make_part(WHOLE)

    def worker_dataset(input_context):
        parts = [make_part(part) for part in replica_parts(input_context)]
        dataset = parts[0]
        if len(parts) > 1:  # round robin: element k goes to local replica k mod len(parts)
            dataset = tf.data.Dataset.choose_from_datasets(
                parts, tf.data.Dataset.range(len(parts)).repeat(), stop_on_empty_dataset=True)
        options = tf.data.Options()
        # Each pipeline already holds only its own replicas' examples: no sharding on top.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options)

    return strategy.distribute_datasets_from_function(worker_dataset)


def barrier(distribution: Distribution) -> None:
    """Wait until every worker gets here (an all-reduce of one number): the other workers read what
    the chief has just written (a stage's model) only after it is there. Nothing on one process."""
    if distribution.kind != "multi_worker":
        return
    strategy = distribution.strategy
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
    if int(total.numpy()) != distribution.replicas:
        raise RuntimeError(f"barrier: {int(total.numpy())} of {distribution.replicas} replicas answered")


class WorkerLostError(UserError):
    """A multi-worker run lost a worker (killed, crashed, unreachable); the run resumes when every
    worker is started again with the same command."""


@contextlib.contextmanager
def worker_failures(distribution: Distribution):
    """Turn TensorFlow's error for a lost worker into one line saying how to resume."""
    if distribution.kind != "multi_worker":
        yield
        return
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError) as error:
        reason = next((line.strip() for line in str(error).splitlines() if "heartbeat" in line or "aborted" in line),
                      str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise WorkerLostError(
            f"worker {distribution.worker_index}: lost contact with the other workers ({reason[:300]}); start every "
            "worker again with the same command: the run resumes from its last finished epoch") from error
