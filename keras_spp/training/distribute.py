"""The ``tf.distribute`` strategy a training runs under, by name."""

STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")


def make_strategy(name, cpu_devices=0):
    """The strategy called ``name`` (one of ``STRATEGIES``): ``"default"`` (one device),
    ``"mirrored"`` (every GPU, else every logical CPU), ``"multi-worker"``
    (``TF_CONFIG``'s cluster) or ``"tpu"``. ``cpu_devices`` > 0 first splits the CPU
    into that many logical devices (to test ``"mirrored"`` without GPUs)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; known: {', '.join(STRATEGIES)}.")
    if cpu_devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi-worker":
        return _multi_worker_strategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy whose ``reduce`` takes what Keras 3's trainer passes it.

    Keras 3.15 on TensorFlow (keras/src/backend/tensorflow/trainer.py) fails with this
    strategy in two places, both calls of ``strategy.reduce``:

    * ``_maybe_symbolic_build``, at the start of every fit and evaluate, reduces the first
      batch, the whole ``(x, y)`` tuple, with ``reduce("MEAN", batch, axis=None)`` to learn its
      shapes. ``Strategy.reduce`` takes one value, not a nest ("TODO: support `value` being a
      nest" in TensorFlow); MirroredStrategy maps over nests anyway, this strategy does not:
      "Attempt to convert a value (PerReplica...) with an unsupported type to a Tensor".
    * ``reduce_per_replica``, on every step's loss and metrics, takes a multi-worker branch
      that calls ``reduce("MEAN", value, axis=0)`` on per-replica scalars, which have no axis
      0: "Invalid reduction dimension 0 for input with 0 dimensions".

    Here a nest is reduced value by value, and a scalar across the replicas only
    (``axis=None``): the mean over all replicas of all workers, what the single-worker branch
    of ``reduce_per_replica`` computes over its local replicas. Other calls are unchanged.
    """
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            reduce_one = super().reduce

            def one(v):
                scalar = self.experimental_local_results(v)[0].shape.rank == 0
                return reduce_one(reduce_op, v, axis=None if scalar else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy()


def gather_from_workers(strategy, numbers):
    """``numbers`` (ints) of every worker, in worker order: a collective, every worker calls it."""
    import tensorflow as tf

    mine = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([numbers], tf.int64))
    return strategy.gather(mine, axis=0).numpy().tolist()


def is_chief(strategy):
    """Whether this process is the chief of ``strategy``'s cluster (the one that writes
    the results): always, outside a cluster; else the ``chief`` task, or worker 0
    where there is none."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)
