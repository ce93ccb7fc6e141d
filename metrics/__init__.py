"""Offline FID/KID: the FID Inception network, its features, and the two statistics."""

from metrics.fid_kid import InceptionFeatures, fid_kid, list_images, resolve_kid_subset_size
from metrics.inception import WEIGHTS_ORIGIN, WeightsError, load_inception

__all__ = ["InceptionFeatures", "fid_kid", "list_images", "resolve_kid_subset_size", "WEIGHTS_ORIGIN",
           "WeightsError", "load_inception"]
