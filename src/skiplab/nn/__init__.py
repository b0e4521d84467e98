"""Skip connections as composable parts.

Residual adds with identity / option-A / option-B shortcuts, branch scales and residual-aware
init parts, stochastic depth; see the submodules for the gated, concatenating and temporal skips.
"""

from skiplab.nn._merge import SkipShapeError, check_same_shape, name_skips
from skiplab.nn.concat import CropAdd, CropConcat, DenseConcat, LayerConcat, center_crop
from skiplab.nn.gated import GatedSkip, Highway
from skiplab.nn.residual import DropPath, Residual, SkipModule, count_skips, reset_residual_inits
from skiplab.nn.scale_balanced import ScaleBalancedResidual
from skiplab.nn.scaling import FixedScale, LayerScale, ReZero, ScaleLastLayer, SkipInit, ZeroGamma
from skiplab.nn.shortcut import PadShortcut, ProjectionShortcut, make_shortcut
from skiplab.nn.temporal import TemporalSkip

__all__ = [
    "CropAdd",
    "CropConcat",
    "DenseConcat",
    "DropPath",
    "FixedScale",
    "GatedSkip",
    "Highway",
    "LayerConcat",
    "LayerScale",
    "PadShortcut",
    "ProjectionShortcut",
    "ReZero",
    "Residual",
    "ScaleBalancedResidual",
    "ScaleLastLayer",
    "SkipInit",
    "SkipModule",
    "SkipShapeError",
    "TemporalSkip",
    "ZeroGamma",
    "center_crop",
    "check_same_shape",
    "count_skips",
    "make_shortcut",
    "name_skips",
    "reset_residual_inits",
]
