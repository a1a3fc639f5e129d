"""Preprocessing equals the official pipeline, rebuilt here from torchvision's transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms

from rsir_cli.datasets import forestnet as fn
from rsir_cli.datasets import open_split
from rsir_cli.errors import CorruptDataError
from rsir_cli.models import get_model_config
from rsir_cli.preprocessing import Preprocessor


def official_transform(model: str, n_read: int):
    """The paper code's per-image transform chain (datasets/bigearthnet.py and forestnet.py there)."""
    config = get_model_config(model)
    chain = [transforms.Resize(size=config.input_size, antialias=True)]
    if n_read != len(config.mean):
        mean = list(config.mean)

        def add_mean_channels(t: torch.Tensor) -> torch.Tensor:
            extra = torch.ones([len(mean) - len(t), *t.shape[1:]]) * torch.tensor(mean)[len(t) :, None, None]
            return torch.concat([t, extra])

        chain.append(add_mean_channels)
    chain.append(transforms.Normalize(mean=list(config.mean), std=list(config.std)))
    return transforms.Compose(chain)


@pytest.mark.parametrize("model", ["prithvi", "prithvi-rgb", "vit"])
@pytest.mark.parametrize("size", [120, 332])
def test_batched_preprocessing_equals_official_per_image_chain(model: str, size: int) -> None:
    config = get_model_config(model)
    n = len(config.read_bands)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 12000, size=(4, n, size, size)).astype(np.float32))
    ours = Preprocessor(config)(images)
    official = official_transform(model, n)
    expected = torch.stack([official(img) for img in images])
    assert ours.shape == (4, len(config.bands), 224, 224)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    if config.fill_bands:
        assert torch.all(ours[:, 3:] == 0)  # mean-filled bands are exactly zero after standardising


def test_forestnet_loading_equals_the_official_operations(forestnet_root: Path) -> None:
    from torchvision import io

    reader = open_split("forestnet", "val", forestnet_root)
    sample = reader.load(0, get_model_config("prithvi").read_bands)
    folder = reader._paths[0]
    visible = io.read_image(str(folder / "images" / "visible" / "composite.png"))
    infrared = torch.tensor(np.load(folder / "images" / "infrared" / "composite.npy").astype(int))
    official = torch.concat([visible[[2, 1, 0]], infrared.permute(2, 0, 1)]) / 255 * 10000
    assert official.dtype == torch.float32
    np.testing.assert_array_equal(sample.image, official.numpy())
    rgb = reader.load(0, get_model_config("vit").read_bands)  # red, green, blue only (no .npy read)
    np.testing.assert_array_equal(rgb.image, official[[2, 1, 0]].numpy())


def test_forestnet_labels_and_official_merge(forestnet_root: Path) -> None:
    # The paper code's tables (datasets/forestnet.py): LABEL_NAMES order and MERGE_LABEL_DICT.
    official_names = [
        "Oil palm plantation", "Timber plantation", "Other large-scale plantations", "Grassland shrubland",
        "Small-scale agriculture", "Small-scale mixed plantation", "Small-scale oil palm plantation", "Mining",
        "Fish pond", "Logging", "Secondary forest", "Other",
    ]  # fmt: skip
    official_merge = {0: 0, 1: 0, 2: 0, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3, 10: 3, 11: 3}
    assert list(fn.LABELS_12) == official_names
    assert fn.LABELS_4 == ("Plantation", "Grassland shrubland", "Smallholder agriculture", "Other")
    for source, target in official_merge.items():
        assert fn.LABEL_SETS["4"].mapping[source] == target, official_names[source]
    import csv

    rows = list(csv.DictReader(open(forestnet_root / "ForestNetDataset" / "val.csv")))
    reader = open_split("forestnet", "val", forestnet_root)
    for i, row in enumerate(rows):
        labels = reader.load(i, ("B02",)).labels
        assert labels.sum() == 1 and fn.LABELS_12[int(labels.argmax())] == row["label"]
        merged = fn.LABEL_SETS["4"].convert(labels[None])[0]
        assert fn.LABELS_4[int(merged.argmax())] == row["merged_label"]


def test_forestnet_csv_disagreeing_with_the_official_merge_is_refused(forestnet_root: Path) -> None:
    path = forestnet_root / "ForestNetDataset" / "val.csv"
    lines = path.read_text().splitlines()
    header, first = lines[0], lines[1].split(",")
    first[1] = "Plantation" if first[1] != "Plantation" else "Other"
    path.write_text("\n".join([header, ",".join(first), *lines[2:]]) + "\n")
    with pytest.raises(CorruptDataError, match="disagrees with the official merge"):
        open_split("forestnet", "val", forestnet_root)


def test_forestnet_footprint_is_a_4980_m_square_around_the_point(forestnet_root: Path) -> None:
    from rsir_cli.geo import lonlat_corners

    reader = open_split("forestnet", "test", forestnet_root)
    sample = reader.load(2, ("B02",))
    left, bottom, right, top = sample.bounds
    assert right - left == pytest.approx(4980) and top - bottom == pytest.approx(4980)
    corners = lonlat_corners([sample.crs], np.array([sample.bounds]))[0]
    lon, lat = reader._lonlat[2]
    assert corners[:, 0].mean() == pytest.approx(lon, abs=1e-3) and corners[:, 1].mean() == pytest.approx(lat, abs=1e-3)
