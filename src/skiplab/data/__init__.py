"""Offline datasets for skiplab: MNIST (idx files), MNIST-1D (generated), digits and Cora.

Nothing here touches the network: MNIST and Cora ship inside the package, MNIST-1D is generated
by the ``mnist1d`` package and cached, digits ship with scikit-learn.

    >>> from skiplab.data import get_dataset
    >>> splits = get_dataset("mnist", size=14)  # doctest: +SKIP
"""

from ._base import FILES_DIR, Splits, get_dataset, list_datasets, register_dataset
from ._errors import DataError, DatasetOptionError
from .cifar import flip_crop, load_cifar10, read_cifar10_batch
from .cora import CORA_PATH, load_cora
from .digits import load_digits
from .gaussians import GaussianMixture, grid_of_gaussians, ring_of_gaussians
from .mnist import MNIST_FILES, MNIST_MEAN, MNIST_STD, load_mnist, md5sum, read_idx, verify_md5
from .mnist1d import default_cache_dir, load_mnist1d
from .segmentation import load_cells, load_mnist_segmentation, make_cells
from .sequence import (
    COPY_BLANK,
    COPY_DELIMITER,
    adding_problem,
    copy_memory,
    load_mnist1d_sequence,
    sequence_copy,
    sequence_reversal,
)

__all__ = [
    "COPY_BLANK",
    "COPY_DELIMITER",
    "CORA_PATH",
    "FILES_DIR",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataError",
    "DatasetOptionError",
    "GaussianMixture",
    "Splits",
    "adding_problem",
    "copy_memory",
    "default_cache_dir",
    "flip_crop",
    "get_dataset",
    "grid_of_gaussians",
    "list_datasets",
    "load_cells",
    "load_cifar10",
    "load_cora",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "load_mnist1d_sequence",
    "load_mnist_segmentation",
    "make_cells",
    "md5sum",
    "read_cifar10_batch",
    "read_idx",
    "register_dataset",
    "ring_of_gaussians",
    "sequence_copy",
    "sequence_reversal",
    "verify_md5",
]
