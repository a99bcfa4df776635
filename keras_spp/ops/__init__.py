"""Pure functions: bin geometry and the pyramid pooling ops."""

from keras_spp.ops.bins import bin_edges, paper_rule_is_valid
from keras_spp.ops.box_cells import boxes_to_cells
from keras_spp.ops.roi_pyramid_pool import roi_pyramid_pool
from keras_spp.ops.spatial_pyramid_pool import pyramid_output_dim, spatial_pyramid_pool

__all__ = [
    "bin_edges",
    "paper_rule_is_valid",
    "boxes_to_cells",
    "roi_pyramid_pool",
    "pyramid_output_dim",
    "spatial_pyramid_pool",
]
