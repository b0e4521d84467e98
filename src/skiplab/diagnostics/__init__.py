"""Diagnostics that work on any nn.Module."""

from skiplab.diagnostics._probe import (  # noqa: F401  (re-exported)
    AbstractProbe,
    batch_statistics,
    channel_stats,
    find_blocks,
)
from skiplab.diagnostics.gradflow import (  # noqa: F401
    GradientFlowProbe,
    gradient_flow_at_init,
    gradient_split,
)
from skiplab.diagnostics.information import (  # noqa: F401  (re-exported)
    gaussian_channel_mi,
    gaussian_mi,
    ksg_mi,
    layerwise_information,
    linear_block_mi,
    stacked_mutual_information,
)
from skiplab.diagnostics.jacobian import (  # noqa: F401
    SpectralNorm,
    block_spectral_norms,
    exact_jacobian,
    singular_values,
    spectral_norm,
)
from skiplab.diagnostics.landscape import (  # noqa: F401
    LossLine,
    LossPlane,
    filter_normalized_direction,
    loss_line,
    loss_plane,
    plot_line,
    plot_plane,
)
from skiplab.diagnostics.lesion import LesionResult, lesion_study, lesioned  # noqa: F401
from skiplab.diagnostics.oversmoothing import (  # noqa: F401
    dirichlet_energy,
    mean_average_distance,
    oversmoothing_profile,
)
from skiplab.diagnostics.paths import (  # noqa: F401
    PathStats,
    block_paths,
    chain_path_stats,
    graph_paths,
    model_block_paths,
    path_gradient_contribution,
)
from skiplab.diagnostics.signal import SignalPropagationProbe, signal_propagation  # noqa: F401
from skiplab.diagnostics.skips import Merge, SkipReport, find_skips, trace  # noqa: F401
