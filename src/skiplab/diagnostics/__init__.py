"""Diagnostics that work on any nn.Module."""

from skiplab.diagnostics._inputs import Inputs, Task, infer_task, primary
from skiplab.diagnostics._probe import (
    AbstractProbe,
    batch_statistics,
    channel_stats,
    eval_mode,
    find_blocks,
)
from skiplab.diagnostics.diagnosis import Diagnosis, diagnose
from skiplab.diagnostics.gradflow import GradientFlowProbe, gradient_flow_at_init, gradient_split
from skiplab.diagnostics.information import (
    gaussian_channel_mi,
    gaussian_mi,
    ksg_mi,
    layerwise_information,
    linear_block_mi,
    stacked_mutual_information,
)
from skiplab.diagnostics.jacobian import (
    SpectralNorm,
    block_spectral_norms,
    exact_jacobian,
    singular_values,
    spectral_norm,
)
from skiplab.diagnostics.landscape import (
    LossLine,
    LossPlane,
    filter_normalized_direction,
    loss_line,
    loss_plane,
    plot_line,
    plot_plane,
)
from skiplab.diagnostics.lesion import LesionResult, lesion_study, lesioned
from skiplab.diagnostics.oversmoothing import (
    dirichlet_energy,
    layer_features,
    mean_average_distance,
    oversmoothing_profile,
    rayleigh_quotient,
)
from skiplab.diagnostics.paths import (
    PathStats,
    block_paths,
    chain_path_stats,
    graph_paths,
    model_block_paths,
    path_gradient_contribution,
)
from skiplab.diagnostics.segmentation import (
    boundary_f1,
    boundary_map,
    dice,
    iou,
    segmentation_scores,
)
from skiplab.diagnostics.signal import SignalPropagationProbe, signal_propagation
from skiplab.diagnostics.skips import Merge, SkipReport, find_skips, trace

__all__ = [
    "AbstractProbe",
    "Diagnosis",
    "GradientFlowProbe",
    "Inputs",
    "LesionResult",
    "LossLine",
    "LossPlane",
    "Merge",
    "PathStats",
    "SignalPropagationProbe",
    "SkipReport",
    "SpectralNorm",
    "Task",
    "batch_statistics",
    "block_paths",
    "block_spectral_norms",
    "boundary_f1",
    "boundary_map",
    "chain_path_stats",
    "channel_stats",
    "diagnose",
    "dice",
    "dirichlet_energy",
    "eval_mode",
    "exact_jacobian",
    "filter_normalized_direction",
    "find_blocks",
    "find_skips",
    "gaussian_channel_mi",
    "gaussian_mi",
    "gradient_flow_at_init",
    "gradient_split",
    "graph_paths",
    "infer_task",
    "iou",
    "ksg_mi",
    "layer_features",
    "layerwise_information",
    "lesion_study",
    "lesioned",
    "linear_block_mi",
    "loss_line",
    "loss_plane",
    "mean_average_distance",
    "model_block_paths",
    "oversmoothing_profile",
    "path_gradient_contribution",
    "plot_line",
    "plot_plane",
    "primary",
    "rayleigh_quotient",
    "segmentation_scores",
    "signal_propagation",
    "singular_values",
    "spectral_norm",
    "stacked_mutual_information",
    "trace",
]
