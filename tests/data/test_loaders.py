"""build_loaders over every format: the same image gets the same label; two streams; resume; config."""

import numpy as np
import pytest
import torch

from bip_dist.data import DataConfig, build_loaders
from data_prep.cli import main
from tests.helpers.archives import color, make_imagenet


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fmt")
    src = make_imagenet(str(tmp / "src"), per_class=6, flat_val=False)
    out = str(tmp / "out")
    formats = "lmdb,ffcv" if _has_ffcv() else "lmdb"
    assert main(["imagenet", "--src", src, "--out", out, "--format", formats, "--workers", "2",
                 "--max-side", "40"]) == 0
    return src, out


def _has_ffcv():
    try:
        import ffcv  # noqa: F401
        return True
    except ImportError:
        return False


def _colour_labels(cfg):
    """{rounded colour: label} over every validation image of `cfg`."""
    loaders = build_loaders(cfg)
    out = {}
    for x, y in loaders.val:
        for img, label in zip(x, y):
            c = tuple(int(round((v - 20) / 40)) for v in (img.float().mean((1, 2)) * 255).tolist())
            out[c] = int(label)
    return out, loaders


def _cfg(fmt, root, **kw):
    base = dict(dataset="imagenet", format=fmt, root=root, batch_size=4, workers=0, image_size=24,
                normalize=False, augment=False)
    return DataConfig(**{**base, **kw})


def test_same_image_same_label_across_formats(prepared):
    src, out = prepared
    want = {tuple(int(round((v - 20) / 40)) for v in color(100 + 18 + k)): k // 2 for k in range(6)}
    got_folder, lf = _colour_labels(_cfg("folder", src))
    got_lmdb, ll = _colour_labels(_cfg("lmdb", out))
    assert got_folder == got_lmdb == want
    assert lf.num_classes == ll.num_classes == 3 and ll.train_size == 18
    if _has_ffcv():
        got_ffcv, lff = _colour_labels(_cfg("ffcv", out))
        assert got_ffcv == want and lff.train_size == 18


def test_train_labels_agree_lmdb_vs_folder(prepared):
    src, out = prepared
    a = build_loaders(_cfg("lmdb", out, workers=2), seed=3)
    b = build_loaders(_cfg("folder", src, workers=2), seed=3)
    a.train.set_epoch(1), b.train.set_epoch(1)
    ya = torch.cat([y for _, y in a.train])
    yb = torch.cat([y for _, y in b.train])
    assert torch.equal(ya, yb) and len(ya) == 16  # same seeded order, same labels


def test_two_streams_and_resume_memory(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("val", 10)):
        np.savez(tmp_path / f"{split}.npz", x=rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
                 y=np.arange(n) % 10, classes=np.array([str(i) for i in range(10)]))
    cfg = DataConfig(dataset="digits", format="memory", root=str(tmp_path), batch_size=8)
    ld = build_loaders(cfg, rank=1, world_size=2, seed=5, two_streams=True)
    assert len(ld.train) == 4 and ld.num_classes == 10 and ld.val_size == 5
    ld.train.set_epoch(2)
    full = list(ld.train)
    (xt, yt), (xm, ym) = full[0]
    assert xt.shape == xm.shape == (8, 3, 32, 32) and xt.dtype == torch.float32
    ld.train.set_epoch(2)
    ld.train.set_start_step(2)
    resumed = list(ld.train)
    assert len(resumed) == 2
    for (a, b), (c, d) in zip(resumed, full[2:]):  # same images, same augmentation
        assert torch.equal(a[0], c[0]) and torch.equal(b[1], d[1])


def test_lmdb_two_streams_split_halves(prepared):
    _, out = prepared
    ld = build_loaders(_cfg("lmdb", out, workers=2), two_streams=True)
    batches = list(ld.train)
    assert len(batches) == 4 and all(a[0].shape == b[0].shape == (4, 3, 24, 24) for a, b in batches)


def test_config_validate_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="data.format = 'tfrecord'"):
        DataConfig(format="tfrecord").validate()
    with pytest.raises(FileNotFoundError, match="data.root"):
        build_loaders(DataConfig(dataset="cifar10", format="lmdb", root=str(tmp_path)))


def test_folder_augmentation_replays_on_resume_with_other_worker_count(tmp_path):
    """Seeded per sample: steps 2.. of a resumed run (0 workers) equal those of the full run (2 workers),
    random crops and flips included; another run seed gives other crops of the same images."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k in range(18):
            pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)  # texture, so crops differ
            path = tmp_path / split / f"c{k % 3}" / f"{k:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    cfg = _cfg("folder", str(tmp_path), augment=True, workers=2)

    def epoch(cfg, seed, start=0):
        ld = build_loaders(cfg, seed=seed, two_streams=True)
        ld.train.set_epoch(1)
        ld.train.set_start_step(start)
        return [(a[0], a[1], b[0], b[1]) for a, b in ld.train]
    full = epoch(cfg, seed=7)
    resumed = epoch(_cfg("folder", str(tmp_path), augment=True, workers=0), seed=7, start=2)
    assert len(full) == 4 and len(resumed) == 2
    for got, want in zip(resumed, full[2:]):
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    # The seed, not the caller's RNG, decides the augmentation.
    from bip_dist.data.datasets import FolderDataset
    from bip_dist.data.presets import train_transform
    from bip_dist.data.seeded import SeededDataset
    ds = SeededDataset(FolderDataset(str(tmp_path / "train"), train_transform("imagenet", 24)))
    torch.manual_seed(0)
    x = ds[(5, 123)][0]
    torch.manual_seed(1)
    assert torch.equal(ds[(5, 123)][0], x)
    assert any(not torch.equal(ds[(5, s)][0], x) for s in range(1, 6))


@pytest.mark.parametrize("size", [32, 28])
def test_batch_pad_crop_flip_equals_per_image_crops(size):
    """The in-RAM loader's batched crop + flip equals cropping and flipping each image by its offsets."""
    from bip_dist.data.presets import batch_pad_crop_flip
    x = torch.randint(0, 255, (16, 3, 32, 32), dtype=torch.uint8)
    out = batch_pad_crop_flip(x, torch.Generator().manual_seed(3), size)
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order
    dy, dx = torch.randint(0, 41 - size, (16,), generator=g), torch.randint(0, 41 - size, (16,), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    assert flip.any() and (~flip).any()
    for i in range(16):
        crop = padded[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


@pytest.mark.skipif(not _has_ffcv(), reason="ffcv not installed")
def test_ffcv_leaves_torch_threads_alone(prepared):
    """FFCV sets torch's thread count to its worker count; training must keep the count it was given."""
    _, out = prepared
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loaders = build_loaders(_cfg("ffcv", out, workers=1, augment=True))
        assert torch.get_num_threads() == 2
        for _ in loaders.train:
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
