"""Datasets (built-in, downloads, folders, manifests), splits and batching."""
from optik.data.batches import TensorBatches
from optik.data.dataset import ImageDataset
from optik.data.files import load_folder, load_manifest
from optik.data.folder import SkippedImagesWarning, decode_image
from optik.data.registry import DATASETS, list_datasets, load_dataset, register_dataset, split_dataset
from optik.data.splits import stratified_split

__all__ = ["DATASETS", "ImageDataset", "SkippedImagesWarning", "TensorBatches", "decode_image", "list_datasets",
           "load_dataset", "load_folder", "load_manifest", "register_dataset", "split_dataset", "stratified_split"]
