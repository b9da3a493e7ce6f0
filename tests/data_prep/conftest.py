import pytest

from tests.helpers.archives import make_imagenet


@pytest.fixture
def imagenet_src(tmp_path):
    """A fake ILSVRC-2012 tree (flat val + LOC_val_solution.csv) with the usual quirks."""
    return make_imagenet(str(tmp_path / "ilsvrc"))
