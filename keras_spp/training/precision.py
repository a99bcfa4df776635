"""The Keras dtype policy for the hardware at hand: bfloat16 where it has bfloat16
arithmetic, float32 where bfloat16 would be emulated (and slower)."""

import contextlib

DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


def machine_cpu_flags():
    """This CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


def bfloat16_hardware(cpu_flags=None):
    """Whether the devices TensorFlow will compute on have bfloat16 arithmetic: every
    visible GPU of compute capability 8.0 or newer, a TPU, or else a CPU whose flags
    (``/proc/cpuinfo``, or ``cpu_flags``) include AVX-512 BF16 or AMX. Elsewhere
    bfloat16 is emulated, and slower than float32."""
    import tensorflow as tf

    if tf.config.list_physical_devices("TPU"):
        return True
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus]
        return all(tuple(c) >= (8, 0) for c in capabilities)
    flags = machine_cpu_flags() if cpu_flags is None else cpu_flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolve_dtype_policy(policy):
    """``policy`` (one of ``DTYPE_POLICIES``) with ``"auto"`` resolved for this machine:
    ``"mixed_bfloat16"`` where ``bfloat16_hardware()``, else ``"float32"``.

    >>> resolve_dtype_policy("mixed_float16")
    'mixed_float16'
    """
    if policy not in DTYPE_POLICIES:
        raise ValueError(f"Unknown dtype policy {policy!r}; known: {', '.join(DTYPE_POLICIES)}.")
    if policy != "auto":
        return policy
    return "mixed_bfloat16" if bfloat16_hardware() else "float32"


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Keras's global dtype policy set to ``policy`` (``"auto"`` resolved) inside the
    ``with`` block and restored after it: what is built inside keeps the policy in each
    layer's config (and computes in it wherever it is loaded), what is built after is
    unaffected.

    >>> import keras
    >>> with dtype_policy_scope("mixed_bfloat16"):
    ...     keras.layers.Dense(2).dtype_policy.name
    'mixed_bfloat16'
    >>> keras.config.dtype_policy().name
    'float32'
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_dtype_policy(policy))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
