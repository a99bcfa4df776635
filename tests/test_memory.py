"""keras_spp.memory: the per-stage peak and the release of freed heap memory."""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_spp import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/clear_refs"), reason="Linux")
def test_the_peak_resets_to_the_current_size_and_follows_an_allocation():
    memory.reset_peak_rss()
    before = memory.peak_rss_bytes()
    block = np.ones(64 * 2**20, np.uint8)  # touched: 64 MB resident
    assert memory.peak_rss_bytes() >= before + 60 * 2**20
    del block
    memory.reset_peak_rss()
    assert memory.peak_rss_bytes() < before + 60 * 2**20


_HEAP_SCENARIO = """
import numpy as np
from keras_spp import memory

def resident():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

# Freeing a large mmapped block raises glibc's mmap threshold, so the 1 MB blocks
# after it come from the heap; the last one, kept, stops the heap's top from
# shrinking by itself when the others are freed.
large = np.ones(8 * 2**20, np.uint8)
del large
blocks = [np.ones(2**20, np.uint8) for _ in range(200)]
keep = np.ones(2**20, np.uint8)
del blocks
held = resident()
released = memory.release_free_memory()
print(released, held, resident())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    # A fresh interpreter: in this one, TensorFlow's threads and arenas decide where
    # the blocks land.
    out = subprocess.run([sys.executable, "-c", _HEAP_SCENARIO], capture_output=True, text=True, check=True).stdout
    released, held, after = out.split()
    assert released == "True"
    assert int(after) < int(held) - 100 * 2**20
