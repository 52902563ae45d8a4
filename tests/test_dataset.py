"""Streaming training data: crops whose switches are the whole image's, a stream that is a pure
function of the sample index, bounded memory, unusable files skipped and reported once."""

import numpy as np
import pytest
import torch
from conftest import make_image

from maxswitch import codec, image
from maxswitch.networks.zoo import load_model
from maxswitch.training import dataset


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(str(tiny_model[0]))


@pytest.mark.parametrize("name", ["tiny", "natural-16-16-16"])
def test_crop_switches_are_the_whole_images_switches(model, name):
    m = model if name == "tiny" else load_model(name)
    rgb = image.pad_to_multiple(np.asarray(make_image(203, 150, seed=5)))
    full = codec.compute_switches(m, rgb)
    mirrored = codec.compute_switches(m, np.ascontiguousarray(rgb[:, ::-1]))
    rng = np.random.default_rng(1)
    for t in range(12):
        p = 32 if t % 3 else 64
        y = 8 * int(rng.integers(0, (rgb.shape[0] - p) // 8 + 1))
        x = 8 * int(rng.integers(0, (rgb.shape[1] - p) // 8 + 1))
        if t == 0:
            y = x = 0  # at the image's corner: no margin on two sides
        mirror = bool(t % 2)
        img, codes = dataset.crop_switches(m.encoder, rgb, y, x, p, mirror=mirror)
        src = rgb[:, ::-1] if mirror else rgb
        assert np.array_equal(img.permute(1, 2, 0).numpy(), src[y : y + p, x : x + p])
        for s, c in enumerate(codes):
            f = 2 ** (s + 1)
            want = (mirrored if mirror else full)[s][:, y // f : (y + p) // f, x // f : (x + p) // f]
            assert np.array_equal(c.numpy(), want), (t, s)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for i in range(5):
        make_image(72 + 8 * i, 64, seed=i).save(d / ("sub" if i % 2 else ".") / f"im{i}.png")
    make_image(24, 24).save(d / "tiny.png")  # smaller than the crops below
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    (d / ".hidden.png").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    return d


def test_folder_and_list_file_give_the_same_images(folder, tmp_path):
    paths = dataset.list_images(folder)
    assert [p.name for p in paths] == ["broken.jpg", "im0.png", "im2.png", "im4.png", "im1.png", "im3.png", "tiny.png"]
    lst = tmp_path / "list.txt"
    lst.write_text("# training images\n" + "\n".join(str(p.relative_to(tmp_path)) for p in paths) + "\n\n")
    assert dataset.list_images(lst) == sorted(tmp_path / p.relative_to(tmp_path) for p in paths)
    with pytest.raises(dataset.DataError, match="no such folder or file"):
        dataset.list_images(tmp_path / "missing")


def test_samples_are_a_function_of_the_index(folder, model):
    paths = dataset.list_images(folder)
    a = dataset.SwitchCrops(paths, model.encoder, 32, seed=7)
    b = dataset.SwitchCrops(paths, model.encoder, 32, seed=7)
    for g in [5, 0, 3, 100, 5]:  # any order, any instance
        x, y = a[g], b[g]
        assert torch.equal(x["image"], y["image"]) and all(torch.equal(p, q) for p, q in zip(x["codes"], y["codes"]))
    other = dataset.SwitchCrops(paths, model.encoder, 32, seed=8)
    assert any(not torch.equal(a[g]["image"], other[g]["image"]) for g in range(6))


def test_an_epoch_visits_every_usable_image_k_times_and_reports_bad_files_once(folder, model):
    paths = dataset.list_images(folder)
    ds = dataset.SwitchCrops(paths, model.encoder, 32, seed=0, crops_per_image=2)
    assert len(ds) == 14
    bad = [b for g in range(len(ds)) for b in ds[g]["bad"]]
    assert sorted(p.split("/")[-1] for p, _ in bad) == ["broken.jpg", "tiny.png"]  # each reported once
    assert "smaller than the 32 x 32 crop" in dict(bad)[str(folder / "tiny.png")]


def test_no_usable_image_is_a_fatal_sample(folder, model):
    ds = dataset.SwitchCrops(dataset.list_images(folder), model.encoder, 512)
    assert "none of the 7 images is readable and at least 512 x 512" in ds[0]["fatal"]
    assert dataset.collate([ds[0], ds[1]]) == {"fatal": ds[0]["fatal"]}


def test_ranks_read_contiguous_slices_of_the_same_global_batches():
    one = iter(dataset.StepBatches(3, 8))
    two = [iter(dataset.StepBatches(3, 8, r, 2)) for r in range(2)]
    for _ in range(3):
        assert next(one) == next(two[0]) + next(two[1])
    assert next(iter(dataset.StepBatches(0, 6, 2, 3))) == [4, 5]


def test_loader_with_workers_gives_the_samples_of_the_index(folder, model):
    ds = dataset.SwitchCrops(dataset.list_images(folder), model.encoder, 32, seed=1)
    it = iter(dataset.loader(ds, 2, 4, 0, 1, workers=2))
    batch = next(it)
    assert batch["image"].shape == (4, 3, 32, 32) and batch["codes"][2].shape == (4, 8, 4, 4)
    for i, g in enumerate(range(8, 12)):
        assert torch.equal(batch["image"][i], ds[g]["image"])


def test_bench_and_training_pick_the_same_files(tmp_path):
    """One rule (imagefiles.walk): Pillow's extensions in any case, nothing hidden, regular files only."""
    from maxswitch.evaluation import bench

    d = tmp_path / "mixed"
    for rel in ["b/z.PNG", "a.jpg", "a-b.png", "a/c.gif", "d.tif", ".hidden.png", ".cache/x.png", "b/.y.jpg"]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        make_image(16, 16, seed=len(rel)).save(d / rel, format="PNG")
    (d / "notes.txt").write_text("not an image")
    (d / "folder.png").mkdir()  # a folder with an image's name
    (d / "gone.png").symlink_to(d / "missing.png")  # a dangling link
    images, others = bench.list_images(d)
    assert images == ["a-b.png", "a.jpg", "a/c.gif", "b/z.PNG", "d.tif"]  # byte order: '-' < '.' < '/'
    assert others == ["notes.txt"]
    assert dataset.list_images(d) == [d / rel for rel in images]
    assert [p.relative_to(d).as_posix() for p in dataset.list_images(str(d))] == images
