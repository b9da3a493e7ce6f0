import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # prep_fakes, for tests/data too
from prep_fakes import make_imagenet  # noqa: E402


@pytest.fixture
def imagenet_src(tmp_path):
    """A fake ILSVRC-2012 tree (flat val + LOC_val_solution.csv) with the usual quirks."""
    return make_imagenet(str(tmp_path / "ilsvrc"))
