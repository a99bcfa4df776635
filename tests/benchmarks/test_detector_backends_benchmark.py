import numpy as np

from benchmarks import detector_backends


def test_inputs_are_one_image_and_boxes_inside_it():
    image, boxes = detector_backends.inputs()
    assert image.shape == (1, detector_backends.HEIGHT, detector_backends.WIDTH, 3) and image.dtype == np.float32
    assert boxes.shape == (detector_backends.BOXES, 4) and boxes.dtype == np.float32
    assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all()
    assert (boxes[:, 2] <= detector_backends.HEIGHT).all() and (boxes[:, 3] <= detector_backends.WIDTH).all()


def test_ratios_are_against_tensorflow_for_the_same_input_kind():
    rows = [
        {"backend": "tensorflow", "call_network_boxes_ms": 2.0, "call_boxes_ms": 4.0, "call_rpn_ms": 5.0},
        {
            "backend": "jax",
            "jax_jit_network_boxes_ms": 3.0,
            "jax_jit_boxes_ms": 6.0,
            "jax_jit_rpn_ms": 20.0,
            "jax_jit_boxes_first_call_ms": 900.0,
        },
    ]
    jax = detector_backends.with_ratios(rows)[1]
    assert (jax["jax_jit_network_boxes_vs_tf"], jax["jax_jit_boxes_vs_tf"], jax["jax_jit_rpn_vs_tf"]) == (1.5, 1.5, 4.0)
    assert "jax_jit_boxes_first_call_vs_tf" not in jax
