import pytest
import tensorflow as tf

from keras_spp.training import precision


def test_auto_dtype_policy_takes_bfloat16_only_where_the_hardware_computes_in_it(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert precision.bfloat16_hardware(["fpu", "avx512f", "avx512_bf16"])
    assert precision.bfloat16_hardware(["amx_bf16", "amx_tile"])
    assert not precision.bfloat16_hardware(["avx2", "avx512f", "avx512bw"])  # emulated: slower
    assert not precision.bfloat16_hardware([])
    assert precision.resolve_dtype_policy("float32") == "float32"
    assert precision.resolve_dtype_policy("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "bfloat16_hardware", lambda: True)
    assert precision.resolve_dtype_policy("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "bfloat16_hardware", lambda: False)
    assert precision.resolve_dtype_policy("auto") == "float32"
    with pytest.raises(ValueError, match="Unknown dtype policy 'bfloat16'; known: float32, mixed_bfloat16"):
        precision.resolve_dtype_policy("bfloat16")


def test_gpus_have_bfloat16_from_compute_capability_8(monkeypatch):
    capabilities = {"gpu:0": (8, 0), "gpu:1": (7, 5)}
    monkeypatch.setattr(
        tf.config.experimental, "get_device_details", lambda gpu: {"compute_capability": capabilities[gpu]}
    )
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu:0"] if kind == "GPU" else [])
    assert precision.bfloat16_hardware([])
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: ["gpu:0", "gpu:1"] if kind == "GPU" else []
    )
    assert not precision.bfloat16_hardware(["avx512_bf16"])  # a T4 beside an A100: not all of them


def test_the_policy_scope_restores_the_global_policy_even_on_errors():
    import keras

    with pytest.raises(RuntimeError):
        with precision.dtype_policy_scope("mixed_float16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"


def test_cpu_flags_are_a_list():
    assert isinstance(precision.machine_cpu_flags(), list)
