import types

import pytest
import tensorflow as tf

from keras_spp.training import distribute


def test_one_process_is_its_own_chief_and_a_cluster_has_one():
    assert distribute.is_chief(distribute.make_strategy("default"))

    def strategy(task_type, task_id):
        return types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(task_type=task_type, task_id=task_id))

    assert distribute.is_chief(strategy("chief", 0))
    assert distribute.is_chief(strategy("worker", 0)) and not distribute.is_chief(strategy("worker", 1))
    assert distribute.is_chief(strategy(None, None))


def test_an_unknown_strategy_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="Unknown strategy 'horovod'; known: default, mirrored, multi-worker, tpu"):
        distribute.make_strategy("horovod")


def test_the_default_strategy_is_tensorflows():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
