"""Cost of multi-size training against single-size, per pixel; prints JSON.

ZF-5 (``--width``) with the SPP head is trained by ``model.fit`` with XLA on
in-memory batches (no decoding, so the model's cost alone is compared):
  * single-size: every epoch at the large size;
  * multi-size: epochs alternating large and small (the small batch is the large
    crop resized, as in the paper), through ``keras_spp.data.pipelines``.
The first epoch at each size (tracing and XLA compilation) is reported apart and
left out of the steady-state figures. The ratio that matters is seconds per
megapixel, multi-size over single-size: 1.0 means switching sizes costs nothing
beyond the pixels.

    python -m benchmarks.multisize --sizes 224,180 --out benchmarks/results/multisize-cpu-2core.json
"""

import argparse
import time

import numpy as np

from benchmarks.report import emit


def run(sizes, width, fc_units, batch, steps, epochs, seed=0):
    import keras
    import tensorflow as tf

    from keras_spp.data.multisize import SizeSchedule
    from keras_spp.data.pipelines import training_dataset
    from keras_spp.models import zf5

    large = max(sizes)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(batch * steps, large + 16, large + 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 10, size=batch * steps)
    source = tf.data.Dataset.from_tensor_slices((images, labels)).cache()

    keras.utils.set_random_seed(seed)
    model = zf5(10, width=width, fc_units=fc_units)
    model.compile(keras.optimizers.SGD(0.001, momentum=0.9), "sparse_categorical_crossentropy", jit_compile=True)
    schedule = SizeSchedule(sizes)
    data = training_dataset(
        source, batch, crop=large, min_side=large + 16, schedule=schedule, jitter=0.0, cache=True, epochs=epochs
    )

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    seconds = []
    model.fit(data, epochs=epochs, steps_per_epoch=steps, callbacks=[Timer()], verbose=0)
    per_epoch = [
        {
            "size": schedule.size_for_epoch(e),
            "seconds": round(s, 3),
            "megapixels": batch * steps * schedule.size_for_epoch(e) ** 2 / 1e6,
        }
        for e, s in enumerate(seconds)
    ]
    first_seen = {}
    for e, row in enumerate(per_epoch):
        first_seen.setdefault(row["size"], e)
    steady = [row for e, row in enumerate(per_epoch) if e not in first_seen.values()]
    return {
        "sizes": list(sizes),
        "epochs": per_epoch,
        "first_epoch_seconds": {str(s): per_epoch[e]["seconds"] for s, e in first_seen.items()},
        "steady_seconds_per_epoch": round(float(np.mean([r["seconds"] for r in steady])), 3),
        "steady_seconds_per_megapixel": round(
            sum(r["seconds"] for r in steady) / sum(r["megapixels"] for r in steady), 4
        ),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="224,180", help="large,small")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--fc-units", type=int, default=512)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out")
    args = p.parse_args(argv)
    large, small = (int(s) for s in args.sizes.split(","))

    from benchmarks.pooling import machine

    single = run((large,), args.width, args.fc_units, args.batch, args.steps, args.epochs)
    multi = run((large, small), args.width, args.fc_units, args.batch, args.steps, args.epochs)
    report = {
        "machine": machine(),
        "model": {"backbone": "zf5", "width": args.width, "fc_units": args.fc_units, "head": "spp", "xla": True},
        "batch": args.batch,
        "steps_per_epoch": args.steps,
        "single_size": single,
        "multi_size": multi,
        "multi_over_single_seconds_per_megapixel": round(
            multi["steady_seconds_per_megapixel"] / single["steady_seconds_per_megapixel"], 3
        ),
    }
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
