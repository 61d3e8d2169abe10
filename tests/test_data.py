from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_image
from dogbreed.config import UserError
from dogbreed.data.batches import BatchSource
from dogbreed.data.cache import load_or_build
from dogbreed.data.check import build_report
from dogbreed.data.images import ImageError, decode_to_square, open_image
from dogbreed.data.layout import discover, readable_label, resolve_location, upload
from dogbreed.data.scan import scan_files
from dogbreed.preprocessing import Preprocessing


@pytest.mark.parametrize("folder, label", [
    ("001.Affenpinscher", "Affenpinscher"), ("n02085620-Chihuahua", "Chihuahua"),
    ("Afghan_hound", "Afghan hound"), ("n02088364-beagle", "beagle"),
])
def test_readable_labels(folder, label):
    assert readable_label(folder) == label


def test_discover_udacity_layout(generated_dataset):
    layout = discover(generated_dataset)
    assert layout.classes == ("001.Affenpinscher", "002.Afghan_hound")
    assert len(layout.splits["train"].files) == 8 and "test" not in layout.splits


def test_missing_folder_and_split_errors(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        discover(tmp_path / "nope")
    (tmp_path / "train" / "a").mkdir(parents=True)
    write_image(tmp_path / "train" / "a" / "x.jpg")
    with pytest.raises(UserError, match="no valid/ split"):
        discover(tmp_path)
    (tmp_path / "valid" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="split valid/ .* has no images"):
        discover(tmp_path)


def _report(root: Path):
    layout = discover(root)
    scans = {n: [s for s, _ in scan_files(list(sp.files), None, 1)] for n, sp in layout.splits.items()}
    return build_report(layout, scans)


def test_check_finds_every_kind_of_problem(generated_dataset):
    root = generated_dataset
    (root / "train" / "001.Affenpinscher" / "zero.jpg").write_bytes(b"")
    (root / "train" / "001.Affenpinscher" / "notes.txt").write_text("hello")
    good = (root / "train" / "002.Afghan_hound" / "0.jpg").read_bytes()
    (root / "train" / "002.Afghan_hound" / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "002.Afghan_hound" / "garbage.jpg").write_bytes(b"\x00not an image at all" * 10)
    (root / "valid" / "002.Afghan_hound" / "dup.jpg").write_bytes(good)  # same image in train and valid
    (root / "train" / "003.Airedale").mkdir()  # empty class, missing from valid
    report = _report(root)
    reasons = {b["path"].split("/")[-1]: b["reason"] for b in report.bad_files}
    assert reasons == {"zero.jpg": "zero-byte file", "notes.txt": "not an image file",
                       "trunc.jpg": "truncated image", "garbage.jpg": "not an image"}
    assert {"split": "train", "class": "003.Airedale"} in report.empty_classes
    assert report.missing_classes == [{"class": "003.Airedale", "missing_from": ["valid"]}]
    assert report.single_split_classes == ["003.Airedale"]
    assert len(report.cross_split_duplicates) == 1
    assert report.counts["train"]["001.Affenpinscher"] == 4
    assert report.image_sizes["train"]["max_width"] == 64
    assert not report.ok


def test_clean_data_has_no_problems(generated_dataset):
    assert _report(generated_dataset).ok


def test_decode_handles_modes_and_exif(tmp_path):
    prep = Preprocessing(input_size=32, crop_pct=0.5)
    for mode in ("L", "CMYK", "RGBA", "P"):
        img = Image.new(mode, (80, 40))
        buf = tmp_path / f"x.{mode}.png" if mode != "CMYK" else tmp_path / "x.jpg"
        img.save(buf)
        arr = decode_to_square(buf.read_bytes(), prep)
        assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
    # EXIF orientation 6 (rotate 90): an 80x40 photo is shown 40x80.
    img = Image.new("RGB", (80, 40), (10, 200, 10))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert open_image((tmp_path / "rot.jpg").read_bytes()).size == (40, 80)


def test_decompression_bomb_and_animation_are_refused(tmp_path):
    Image.new("1", (10000, 10000)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="too large"):
        open_image((tmp_path / "big.png").read_bytes())
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="animated"):
        open_image((tmp_path / "a.gif").read_bytes())


def test_cache_is_built_once_and_reused(generated_dataset):
    layout = discover(generated_dataset)
    prep = Preprocessing(input_size=32, crop_pct=0.5)
    a = load_or_build(layout.splits["train"], prep, layout.class_index(), workers=1)
    assert a.images.shape == (8, 64, 64, 3) and list(a.labels) == [0] * 4 + [1] * 4
    b = load_or_build(layout.splits["train"], prep, layout.class_index(), workers=1)
    assert a.key == b.key
    # Changing one photo's content changes the key.
    write_image(generated_dataset / "train" / "001.Affenpinscher" / "0.jpg", seed=999)
    c = load_or_build(discover(generated_dataset).splits["train"], prep, layout.class_index(), workers=1)
    assert c.key != a.key


def test_batches_crop_flip_and_normalise():
    prep = Preprocessing(input_size=24, crop_pct=0.75, mean=(0.5,) * 3, std=(0.5,) * 3)
    images = np.full((10, 32, 32, 3), 255, np.uint8)
    src = BatchSource(images, np.arange(10), prep, batch_size=4, train=True, augmentation="crop_color_transform")
    batches = list(src.batches(epoch=1))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, _ = batches[0]
    assert x.shape == (4, 3, 24, 24) and float(x.max()) <= 1.0 + 1e-5
    assert sorted(int(v) for _, y in batches for v in y) == list(range(10))


def test_upload_and_uri_location(generated_dataset, tmp_path):
    dest = tmp_path / "bucket" / "dogs"
    n = upload(str(generated_dataset), f"file://{dest}")
    assert n == 12
    assert resolve_location(f"file://{dest}") == dest.resolve()
    assert discover(resolve_location(f"file://{dest}")).classes == ("001.Affenpinscher", "002.Afghan_hound")
    # A non-local fsspec filesystem (memory://) is copied into the home once.
    import fsspec

    fs = fsspec.filesystem("memory")
    for p in sorted(generated_dataset.rglob("*.jpg")):
        fs.pipe(f"/dogs/{p.relative_to(generated_dataset).as_posix()}", p.read_bytes())
    local = resolve_location("memory://dogs")
    assert discover(local).classes == ("001.Affenpinscher", "002.Afghan_hound")
