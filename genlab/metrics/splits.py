"""The real images that metrics compare against: a dataset's train and test splits.

Each dataset says which images these are (`Dataset.reference`, genlab/data/base.py): those with
splits of their own (dataset.split) give them; one without says how it holds images out (shapes:
genlab/data/shapes.py). Images come as stored, never binarized.
"""

from __future__ import annotations

from genlab.data import dataset_class
from genlab.data.batches import ImageData


def split_data(dataset: dict, split: str) -> ImageData:
    """The `split` ("train" or "test") of the dataset that the plain `dataset` config section describes."""
    return dataset_class(dataset).reference(dataset, split)
