"""Datasets, splits and on-device preprocessing.

    ds = fmjax.data.load_dataset("fashion_mnist")      # uint8 NHWC + int32 labels
    split = fmjax.data.class_split(ds.train_labels, 0)  # forget class 0

Datasets by name: ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``,
``tiny_imagenet``, ``digits``. Local files come first (IDX gzip files, CIFAR
archives, the tiny-imagenet-200 folder, scikit-learn's digits), then a copy
prepared by tensorflow-datasets (``make data DATASET=...``), read with
``tfds.data_source`` and no TensorFlow.
"""

from fmjax.data._datasets import (
    DATA_DIR_ENV,
    DATASETS,
    Dataset,
    DatasetInfo,
    PrepareError,
    archive_dir,
    data_dir,
    how_to_get,
    load_dataset,
    prepare_tfds,
)
from fmjax.data._readers import DamagedFile
from fmjax.data.preprocess import augment, normalize
from fmjax.data.splits import (
    ForgetSplit,
    OutlierSplit,
    class_split,
    limited_subset,
    outlier_split,
    random_split,
    salun_forget,
    salun_holdout,
)

__all__ = ["DATASETS", "DATA_DIR_ENV", "DamagedFile", "Dataset", "DatasetInfo", "ForgetSplit",
           "OutlierSplit", "PrepareError", "archive_dir",
           "augment", "class_split", "data_dir", "how_to_get", "limited_subset", "load_dataset",
           "normalize", "outlier_split", "prepare_tfds", "random_split", "salun_forget",
           "salun_holdout"]
