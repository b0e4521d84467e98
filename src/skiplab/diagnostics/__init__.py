"""Diagnostics that work on any nn.Module."""

from skiplab.diagnostics.information import (  # noqa: F401  (re-exported)
    gaussian_channel_mi,
    gaussian_mi,
    ksg_mi,
    layerwise_information,
    linear_block_mi,
    stacked_mutual_information,
)
