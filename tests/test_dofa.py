"""DOFA against torchgeo's implementation, and band sets described by the band table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from rsir_cli.bands import SENSORS, parse_band_list, parse_wavelengths, reflectance_statistics, resolve_band
from rsir_cli.errors import UsageError
from rsir_cli.models import build_encoder, config_from_provenance, get_model_config
from rsir_cli.models.dofa import DOFAEncoder, load_dofa_weights
from tests.reference import torchgeo_dofa, torchgeo_source


def _rel(ours: torch.Tensor, expected: torch.Tensor) -> float:
    return float((ours.double() - expected.double()).norm() / expected.double().norm())


def _reference(tg, depth: int, seed: int, **shape: int) -> torch.nn.Module:
    """torchgeo's DOFA (base shape unless told), random weights moved away from their init."""
    torch.manual_seed(seed)
    kwargs = {"patch_size": 16, "embed_dim": 768, "depth": depth, "num_heads": 12, **shape}
    model = tg.DOFA(img_size=224, num_classes=0, **kwargs)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("fc_norm"):
                continue  # published weights have none: torchgeo leaves it at ones and zeros
            param.add_(torch.randn_like(param) * (0.02 if param.ndim > 1 else 0.1))
    return model.eval()


def published_layout(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What torchgeo's DOFA_MAE file holds: the state dict without fc_norm and head."""
    return {k: v for k, v in reference.state_dict().items() if not k.startswith(("fc_norm.", "head."))}


BAND_SETS = {
    "sentinel2-9": None,  # the model's default band set
    "planetscope": ("planetscope", ["blue", "green", "red", "nir"]),
    "landsat8": ("landsat8", ["B2", "B3", "B4", "B5", "B6", "B7"]),
}


@pytest.mark.parametrize("band_set", list(BAND_SETS))
def test_dofa_equals_torchgeo_at_reduced_depth(tmp_path: Path, band_set: str) -> None:
    tg = torchgeo_dofa()
    reference = _reference(tg, depth=2, seed=0)
    torch.save(published_layout(reference), tmp_path / "dofa.pth")
    config = dataclasses.replace(get_model_config("dofa-base"), depth=2)
    if BAND_SETS[band_set]:
        sensor, names = BAND_SETS[band_set]
        config = config.with_bands(names, sensor=sensor)
    encoder = build_encoder(config, weights=tmp_path / "dofa.pth")
    x = torch.randn(2, len(config.bands), 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = encoder.module(x)
        expected = reference.forward_features(x, list(config.wavelengths))
    assert ours.shape == (2, 768)
    assert _rel(ours, expected) < 1e-5


def test_original_release_layout_loads_and_band_order_does_not_matter(tmp_path: Path) -> None:
    """DOFA_ViT_base_e100.pth adds the MAE's mask_token, norm and projector: dropped."""
    tg = torchgeo_dofa()
    reference = _reference(tg, depth=1, seed=2)
    state = published_layout(reference)
    state.update({"mask_token": torch.zeros(1, 1, 512), "norm.weight": torch.ones(768), "norm.bias": torch.zeros(768)})
    state.update({"projector.weight": torch.zeros(512, 768), "projector.bias": torch.zeros(512)})
    torch.save({"model": state}, tmp_path / "release.pth")
    config = dataclasses.replace(get_model_config("dofa-base"), depth=1)
    encoder = build_encoder(config, weights=tmp_path / "release.pth")
    x = torch.randn(1, 9, 224, 224, generator=torch.Generator().manual_seed(3))
    order = [8, 2, 0, 5, 1, 7, 3, 6, 4]
    permuted = config.with_bands([config.bands[i] for i in order])
    shuffled = build_encoder(permuted, weights=tmp_path / "release.pth")
    with torch.inference_mode():
        ours = encoder.module(x)
        expected = reference.forward_features(x, list(config.wavelengths))
        other_order = shuffled.module(x[:, order])
    assert _rel(ours, expected) < 1e-5
    assert _rel(other_order, ours) < 1e-5  # bands travel with their wavelengths


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dofa-base", "dofa-large"])
def test_dofa_equals_torchgeo_at_full_size(model: str) -> None:
    tg = torchgeo_dofa()
    shape = {} if model == "dofa-base" else {"embed_dim": 1024, "num_heads": 16}
    depth = 12 if model == "dofa-base" else 24
    reference = _reference(tg, depth=depth, seed=4, **shape)
    config = get_model_config(model)
    with torch.device("meta"):
        module = DOFAEncoder(config)
    load_dofa_weights(module, published_layout(reference), "in-memory published layout")
    x = torch.randn(1, 9, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        assert _rel(module.eval()(x), reference.forward_features(x, list(config.wavelengths))) < 1e-5


def test_configs_name_torchgeo_published_weights() -> None:
    """The URL torchgeo 0.8.1 loads each DOFA checkpoint from is the one the config points to."""
    source = torchgeo_source("dofa").read_text()
    for model in ("dofa-base", "dofa-large"):
        weights = get_model_config(model).weights
        assert f"hf.co/{weights.repo_id}/resolve/{weights.revision}/{weights.filename}" in source
        assert weights.filename.endswith(f"-{weights.sha256_prefix}.pth")


def test_band_table_wavelengths_and_readable_names() -> None:
    assert resolve_band("B8A").center_um == 0.865 and resolve_band("nir").name == "B08"
    assert resolve_band("swir1").name == "B11" and resolve_band("b2").name == "B02"
    landsat = resolve_band("B05", "landsat8")  # Landsat's NIR is read as the narrow NIR B8A
    assert (landsat.name, landsat.center_um, landsat.sentinel2) == ("B5", 0.865, "B8A")
    assert resolve_band("nir", "landsat9").name == "B5"  # one NIR band answers to both roles
    planet = resolve_band("nir", "planetscope")
    assert (planet.center_um, planet.sentinel2) == (0.865, "B08")
    assert parse_band_list("planetscope:blue,green,red,nir") == ("planetscope", ["blue", "green", "red", "nir"])
    assert parse_band_list("B02, B03") == ("sentinel2", ["B02", "B03"])
    assert parse_wavelengths("0.49,0.56") == [0.49, 0.56]
    for bad, message in [
        (lambda: resolve_band("rededge"), "several 'rededge' bands"),
        (lambda: resolve_band("B8A", "landsat8"), "landsat8 has no band 'B8A'"),
        (lambda: resolve_band("B1", "modis"), "unknown sensor"),
        (lambda: parse_wavelengths("0.4,red"), "numbers in µm"),
        (lambda: parse_band_list("landsat8:"), "no bands"),
    ]:
        with pytest.raises(UsageError, match=message):
            bad()
    # Every table entry that has a Sentinel-2 counterpart names a real Sentinel-2 band.
    s2 = set(SENSORS["sentinel2"])
    assert all(b.sentinel2 in s2 for table in SENSORS.values() for b in table.values() if b.sentinel2)


def test_reflectance_statistics_interpolate_the_published_hls_values() -> None:
    hls = [0.490, 0.560, 0.665, 0.865, 1.610, 2.190]
    mean, std = reflectance_statistics(hls)
    assert mean == (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
    assert std == (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)
    # 0.705 µm lies a fifth of the way from red (0.665) to NIR narrow (0.865).
    mean, std = reflectance_statistics([0.705, 0.443, 2.3])
    assert mean[0] == pytest.approx(1433 + 0.2 * (2734 - 1433)) and std[0] == pytest.approx(2178 + 0.2 * (1850 - 2178))
    assert mean[1:] == (1087.0, 1363.0)  # held constant outside the HLS bands
    with pytest.raises(UsageError, match="10.895 µm"):
        reflectance_statistics([0.49, 10.895])
    dofa = get_model_config("dofa-base")  # the YAML's statistics are this rule's
    assert (dofa.mean, dofa.std) == reflectance_statistics(dofa.wavelengths)


def test_band_sets_round_trip_through_the_store_provenance() -> None:
    dofa = get_model_config("dofa-base")
    planet = dofa.with_bands(["blue", "green", "red", "nir"], sensor="planetscope")
    assert planet.bands == ("B02", "B03", "B04", "B08") and planet.wavelengths == (0.49, 0.565, 0.665, 0.865)
    assert planet.sensor == "planetscope" and planet.mean == reflectance_statistics(planet.wavelengths)[0]
    drone = dofa.with_bands(
        ["B02", "B03", "B04", "B08"], wavelengths=[0.475, 0.56, 0.668, 0.842], mean=[1e3] * 4, std=[2e3] * 4
    )
    assert drone.sensor == "custom" and drone.wavelengths == (0.475, 0.56, 0.668, 0.842) and drone.mean == (1e3,) * 4
    for config in (dofa, planet, drone):
        attrs = json.loads(json.dumps(config.provenance()))  # what an HDF5 attribute keeps
        assert config_from_provenance(attrs) == config
        assert attrs["wavelengths"] == list(config.wavelengths) and attrs["sensor"] == config.sensor
    small = dataclasses.replace(planet, depth=1, embed_dim=64, num_heads=4)
    rebuilt = config_from_provenance(json.loads(json.dumps(small.provenance())))
    x = torch.randn(1, 4, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        first = build_encoder(small, random_weights=True).module(x)
        again = build_encoder(rebuilt, random_weights=True).module(x)
    assert torch.equal(first, again)


def test_band_set_errors_say_what_is_wrong() -> None:
    dofa = get_model_config("dofa-base")
    cases = [
        (lambda: get_model_config("prithvi").with_bands(["B02"]), "reads a fixed band set"),
        (lambda: dofa.with_bands(["blue", "yellow"], sensor="planetscope"), "yellow.*no Sentinel-2 counterpart"),
        (lambda: dofa.with_bands(["B5", "nir"], sensor="landsat8"), "same band twice"),
        (lambda: dofa.with_bands(["B02", "B03"], wavelengths=[0.49]), "1 wavelengths given for 2 bands"),
        (lambda: dofa.with_bands(["B02"], mean=[1.0]), "both the per-band mean and std"),
    ]
    for call, message in cases:
        with pytest.raises(UsageError, match=message):
            call()
