"""Fixtures of the small ViT in :mod:`vit_files` for the convert and sources tests."""

import pytest
from vit_files import perturbed_params, sample_images


@pytest.fixture
def params():
    """Random params of ``vit_files.CFG`` with every leaf perturbed."""
    return perturbed_params()


@pytest.fixture
def images():
    """Two seeded ``16 x 16 x 3`` images."""
    return sample_images()
