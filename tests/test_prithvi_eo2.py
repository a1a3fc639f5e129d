"""Prithvi-EO-2.0 (300M, 600M, TL) against terratorch's own model code, on random weights.

The reference is terratorch 1.2.13's ``PrithviViT`` built with the published configuration
(``prithvi_cfgs`` in terratorch's ``prithvi_vit.py``), loaded the way terratorch's
``checkpoint_filter_fn_vit`` loads a published file (decoder dropped, ``pos_embed`` recomputed for
one frame, ``encoder.`` stripped), and pooled as rsir pools: the mean of the patch tokens of
``forward_features(...)[-1]`` (after the final norm). rsir loads the same weights from a file in
the published MAE layout (``encoder.*`` + ``decoder.*``, 4-frame ``pos_embed``) or in the flat
encoder layout.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest
import torch

from rsir_cli.errors import WeightsError
from rsir_cli.models import build_encoder, get_model_config, location_input, time_input
from rsir_cli.models.prithvi import PrithviEO2Encoder, load_encoder_weights
from rsir_cli.models.registry import ModelConfig
from tests.reference import terratorch_prithvi_mae

# terratorch's prithvi_cfgs for the four models (common: img_size 224, 6 bands, mlp_ratio 4).
PUBLISHED = {
    "prithvi-eo2-300m": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "patch_size": [1, 16, 16]},
    "prithvi-eo2-300m-tl": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "patch_size": [1, 16, 16]},
    "prithvi-eo2-600m": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "patch_size": [1, 14, 14]},
    "prithvi-eo2-600m-tl": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "patch_size": [1, 14, 14]},
}
DECODER = {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}
PRETRAINING_FRAMES = 4
DATES = [date(2018, 6, 21), date(2021, 1, 15)]
PLACES = [(48.137, 11.575), (-3.43, 104.71)]


def _coords(model: str) -> dict:
    tl = model.endswith("-tl")
    return {"coords_encoding": ["time", "location"] if tl else [], "coords_scale_learn": tl}


def _reference(pm, model: str, depth: int, img_size: int) -> torch.nn.Module:
    """terratorch's encoder for one frame, built on meta (its own random init is not needed)."""
    cfg = {**PUBLISHED[model], "depth": depth}
    with torch.device("meta"):
        return pm.PrithviViT(img_size=img_size, num_frames=1, in_chans=6, mlp_ratio=4, **cfg, **_coords(model))


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random values for every weight of ``module`` (LayerNorm weights near 1, TL scales well above 0).

    Each tensor is a slice of one pool of 2^23 normal numbers, at its own offset: allocating and
    drawing 600M numbers would cost far more than the forward passes on a 2-core machine.
    """
    g = torch.Generator().manual_seed(seed)
    pool = 0.02 * torch.randn(1 << 23, generator=g)
    state = {}
    for index, (key, value) in enumerate(module.state_dict().items()):
        offset = (index * 104_729) % (pool.numel() - value.numel() + 1)
        noise = pool[offset : offset + value.numel()].view(value.shape)
        if key.endswith("embed_enc.scale"):
            state[key] = torch.tensor([0.3 if "temporal" in key else 0.2])
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            state[key] = 1 + 5 * noise
        else:
            state[key] = noise
    return state


def published_layout(pm, encoder_state: dict[str, torch.Tensor], model: str, img_size: int = 224) -> dict:
    """The encoder's weights as a published Prithvi-EO-2.0 file holds them: a PrithviMAE state dict."""
    cfg = PUBLISHED[model]
    with torch.device("meta"):
        mae = pm.PrithviMAE(
            img_size=img_size,
            num_frames=PRETRAINING_FRAMES,
            in_chans=6,
            mlp_ratio=4,
            **cfg,
            **DECODER,
            **_coords(model),
        )
    layout = {}
    for key, value in mae.state_dict().items():
        if key.startswith("encoder.") and key[len("encoder.") :] in encoder_state and "pos_embed" not in key:
            layout[key] = encoder_state[key[len("encoder.") :]]
        elif key.startswith("encoder.blocks."):
            continue  # a reduced-depth test encoder has fewer blocks than the MAE built from cfg
        else:  # decoder weights and the 4-frame pos_embed: shapes as published, values unused
            layout[key] = torch.zeros(1).expand(value.shape)
    return layout


def reference_forward(pm, ref, encoder_state, x, time=None, location=None) -> torch.Tensor:
    """terratorch's forward, loaded as ``checkpoint_filter_fn_vit`` loads a checkpoint."""
    grid = ref.patch_embed.grid_size
    pos = torch.from_numpy(pm.get_3d_sincos_pos_embed(ref.embed_dim, grid, add_cls_token=True)).float().unsqueeze(0)
    ref.load_state_dict({**encoder_state, "pos_embed": pos}, strict=True, assign=True)
    ref.eval()
    with torch.inference_mode():
        temporal = time.unsqueeze(1) if time is not None else None  # (B, T=1, 2)
        tokens = ref.forward_features(x, temporal_coords=temporal, location_coords=location)[-1]
    return tokens[:, 1:].mean(dim=1)


def _rel(ours: torch.Tensor, expected: torch.Tensor) -> float:
    return float((ours.double() - expected.double()).norm() / expected.double().norm())


def _reduced(model: str, depth: int, input_size: int = 224) -> ModelConfig:
    return dataclasses.replace(get_model_config(model), depth=depth, input_size=input_size)


@pytest.fixture(scope="module")
def pm():
    return terratorch_prithvi_mae()


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_equals_terratorch_at_reduced_depth_from_the_published_layout(pm, tmp_path: Path, model: str) -> None:
    """Full width and patch, 1 block, 224 px (600M: patch 14, a 16 x 16 grid)."""
    config = _reduced(model, depth=1)
    ref = _reference(pm, model, depth=1, img_size=224)
    state = _random_state(ref, seed=1)
    path = tmp_path / "published.pt"
    torch.save(published_layout(pm, state, model), path)
    encoder = build_encoder(config, weights=path)
    grid = 224 // config.patch_size
    assert encoder.module.pos_embed.shape == (1, 1 + grid * grid, config.embed_dim)
    x = torch.randn(2, 6, 224, 224, generator=torch.Generator().manual_seed(2))
    cases = [{}]
    if model.endswith("-tl"):  # time only and location only: in the tests below
        cases.append({"time": time_input(DATES), "location": location_input(PLACES)})
    for extras in cases:
        with torch.inference_mode():
            ours = encoder.module(x, **extras)
        expected = reference_forward(pm, ref, state, x, **extras)
        assert ours.shape == (2, config.embed_dim)
        assert _rel(ours, expected) < 1e-5, (extras.keys(), _rel(ours, expected))


def test_flat_encoder_layout_loads_the_same_network(pm, tmp_path: Path) -> None:
    """An encoder saved on its own (terratorch's PrithviViT state dict, with its 1-frame pos_embed)."""
    model = "prithvi-eo2-300m-tl"
    ref = _reference(pm, model, depth=1, img_size=224)
    state = _random_state(ref, seed=3)
    grid = ref.patch_embed.grid_size
    pos = torch.from_numpy(pm.get_3d_sincos_pos_embed(1024, grid, add_cls_token=True)).float().unsqueeze(0)
    torch.save({**state, "pos_embed": pos}, tmp_path / "flat.pt")
    encoder = build_encoder(_reduced(model, depth=1), weights=tmp_path / "flat.pt")
    x = torch.randn(1, 6, 224, 224, generator=torch.Generator().manual_seed(4))
    location = location_input(PLACES[:1])
    with torch.inference_mode():
        ours = encoder.module(x, location=location)
    assert _rel(ours, reference_forward(pm, ref, state, x, location=location)) < 1e-5


def test_dates_and_places_change_the_embedding_and_unknown_ones_are_left_out(pm, tmp_path: Path) -> None:
    model = "prithvi-eo2-300m-tl"
    ref = _reference(pm, model, depth=1, img_size=224)
    state = _random_state(ref, seed=5)
    torch.save(published_layout(pm, state, model), tmp_path / "tl.pt")
    encoder = build_encoder(_reduced(model, depth=1), weights=tmp_path / "tl.pt")
    image = torch.randn(1, 6, 224, 224, generator=torch.Generator().manual_seed(6)).expand(2, -1, -1, -1)
    with torch.inference_mode():
        two_dates = encoder.module(image, time=time_input(DATES))
        two_places = encoder.module(image, location=location_input(PLACES))
        # Sample 0 dated, sample 1 not: each equals the reference run with and without the date.
        mixed = encoder.module(image, time=time_input([DATES[0], None]))
    assert _rel(two_dates[0], two_dates[1]) > 1e-3  # same pixels, other date: another embedding
    assert _rel(two_places[0], two_places[1]) > 1e-3
    dated = reference_forward(pm, ref, state, image[:1], time=time_input(DATES[:1]))
    undated = reference_forward(pm, ref, state, image[:1])
    assert _rel(mixed[:1], dated) < 1e-5 and _rel(mixed[1:], undated) < 1e-5
    assert _rel(dated, undated) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("model", list(PUBLISHED))
def test_equals_terratorch_at_full_depth(pm, model: str) -> None:
    """Every block of each published architecture, one image; a 4 x 4 token grid keeps it cheap.

    The 224-px grid itself (and the 600M's 16 x 16) is checked at reduced depth above.
    """
    cfg = PUBLISHED[model]
    size = 4 * cfg["patch_size"][-1]
    config = _reduced(model, depth=cfg["depth"], input_size=size)
    ref = _reference(pm, model, depth=cfg["depth"], img_size=size)
    state = _random_state(ref, seed=7)
    with torch.device("meta"):  # as build_encoder does, without writing 1-2.5 GB to disk first
        module = PrithviEO2Encoder(config)
    load_encoder_weights(module, published_layout(pm, state, model), "in-memory published layout")
    module.eval()
    x = torch.randn(1, 6, size, size, generator=torch.Generator().manual_seed(8))
    extras = {"time": time_input(DATES[:1]), "location": location_input(PLACES[:1])} if model.endswith("-tl") else {}
    with torch.inference_mode():
        embedding = module(x, **extras)
    assert _rel(embedding, reference_forward(pm, ref, state, x, **extras)) < 1e-5


def _shaped_checkpoint(embed_dim: int, depth: int, patch: int, tl: bool) -> dict[str, torch.Tensor]:
    """A checkpoint with a published variant's key layout and shapes but no real data (stride-0 views)."""

    def empty(*shape: int) -> torch.Tensor:
        return torch.zeros(1).expand(*shape)

    state = {
        "encoder.patch_embed.proj.weight": empty(embed_dim, 6, 1, patch, patch),
        "decoder.mask_token": empty(1, 1, 512),
    }
    for i in range(depth):
        state[f"encoder.blocks.{i}.attn.qkv.weight"] = empty(3 * embed_dim, embed_dim)
    if tl:
        state["encoder.temporal_embed_enc.scale"] = torch.ones(1)
        state["encoder.location_embed_enc.scale"] = torch.ones(1)
    return state


@pytest.mark.parametrize(
    ("model", "file_variant", "named"),
    [
        (
            "prithvi-eo2-300m",
            (1280, 32, 14, False),
            r"Prithvi-EO-2\.0-600M \(1280-d, 32 blocks, patch 14.*prithvi-eo2-300m is Prithvi-EO-2\.0-300M \(1024-d.*--model prithvi-eo2-600m ",
        ),
        (
            "prithvi-eo2-300m",
            (1024, 24, 16, True),
            r"Prithvi-EO-2\.0-300M-TL .*location and time encodings.*prithvi-eo2-300m is Prithvi-EO-2\.0-300M .*no time/location.*--model prithvi-eo2-300m-tl ",
        ),
        (
            "prithvi-eo2-600m-tl",
            (1280, 32, 14, False),
            r"Prithvi-EO-2\.0-600M \(.*prithvi-eo2-600m-tl is Prithvi-EO-2\.0-600M-TL.*--model prithvi-eo2-600m ",
        ),
        ("prithvi-eo2-300m", (768, 12, 16, False), r"Prithvi-EO-1\.0-100M .*--model prithvi "),
    ],
)
def test_checkpoint_of_another_variant_names_both(tmp_path: Path, model: str, file_variant: tuple, named: str) -> None:
    path = tmp_path / "other.pt"
    torch.save(_shaped_checkpoint(*file_variant), path)
    assert path.stat().st_size < 1_000_000  # shapes only
    with pytest.raises(WeightsError, match=named) as caught:
        build_encoder(get_model_config(model), weights=path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_time_and_location_inputs() -> None:
    time = time_input([date(2020, 12, 31), None, date(2021, 3, 1)])
    assert time[0].tolist() == [2020.0, 366.0] and time[2].tolist() == [2021.0, 60.0]
    assert torch.isnan(time[1]).all()
    assert location_input([(-33.9, 151.2)]).tolist() == [[pytest.approx(-33.9), pytest.approx(151.2)]]
    with pytest.raises(Exception, match="latitude, longitude"):
        location_input([(151.2, -33.9)])
    tl = build_encoder(_reduced("prithvi-eo2-300m-tl", depth=1, input_size=32), random_weights=True)
    assert tl.accepts == ("time", "location")
    extras = tl.extra_inputs(dates=[date(2019, 5, 2), None], latlon=None)
    assert set(extras) == {"time"} and extras["time"].shape == (2, 2)
    assert tl.extra_inputs(dates=[None, None]) == {}  # nothing known: the model runs without them
    plain = build_encoder(_reduced("prithvi-eo2-300m", depth=1, input_size=32), random_weights=True)
    assert plain.accepts == () and plain.extra_inputs(dates=[date(2019, 5, 2)], latlon=[(1.0, 2.0)]) == {}
    with pytest.raises(ValueError, match="takes no time input"):
        plain.module(torch.zeros(1, 6, 32, 32), time=time_input([date(2019, 5, 2)]))
