import os

import pytest

# Tests never touch a GPU. (pytest.ini's `pythonpath = .` makes the repository's packages and
# tests.helpers importable without installation.)
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def tiny_models():
    """The test models (tests/helpers/models.py) registered by name for this test only."""
    from tests.helpers import models
    with models.registered():
        yield
