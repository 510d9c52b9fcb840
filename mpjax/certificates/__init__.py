"""Data-path certificates: elastic-net objectives, path bounds and the statements they certify, and their capture on a network."""

from mpjax.certificates import bounds, network, objectives
from mpjax.certificates.network import (
    certify_network,
)

__all__ = [
    "bounds",
    "network",
    "objectives",
    "certify_network",
]
