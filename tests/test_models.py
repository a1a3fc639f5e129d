"""Encoders against independent references: a hand-written Prithvi forward, torchvision's ViT."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rsir_cli.errors import UsageError, WeightsError
from rsir_cli.models import build_encoder, get_model_config
from rsir_cli.models.registry import ModelConfig
from tests import fakedata
from tests.helpers import TINY, random_checkpoint


def _to_2024_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        if key.startswith(("decoder", "mask_token")):
            out["decoder." + key.replace("decoder_", "")] = value
        else:
            out["encoder." + key] = value
    return out


def _sincos(dim: int, position: int) -> list[float]:
    # The official formula: frequencies 1 / 10000^(i / (dim/2)) computed in float32.
    freqs = [
        float(np.float32(1.0) / np.float32(10000) ** np.float32(np.float32(i) / np.float32(dim / 2)))
        for i in range(dim // 2)
    ]
    return [math.sin(position * f) for f in freqs] + [math.cos(position * f) for f in freqs]


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """A straightforward float64 Prithvi encoder forward (one frame), written from the paper's description."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    b, c, h, w = x.shape
    p, d, heads = cfg["patch_size"], cfg["embed_dim"], cfg["num_heads"]
    rows, cols = h // p, w // p
    # Patch embedding: each p x p patch (all channels) through a linear map, row-major token order.
    weight = sd["patch_embed.proj.weight"].reshape(d, c * p * p)
    tokens = []
    for r in range(rows):
        for q in range(cols):
            patch = x[:, :, r * p : (r + 1) * p, q * p : (q + 1) * p].reshape(b, c * p * p)
            pos = _sincos(d // 16 * 6, q) + _sincos(d // 16 * 6, r) + _sincos(d // 16 * 4, 0)
            tokens.append(patch @ weight.T + sd["patch_embed.proj.bias"] + torch.tensor(pos, dtype=torch.float64))
    seq = torch.cat([sd["cls_token"].expand(b, 1, d), torch.stack(tokens, dim=1)], dim=1)
    eps = cfg["norm_eps"]
    for i in range(cfg["depth"]):
        k = f"blocks.{i}."
        y = _layer_norm(seq, sd[k + "norm1.weight"], sd[k + "norm1.bias"], eps)
        qkv = y @ sd[k + "attn.qkv.weight"].T + sd[k + "attn.qkv.bias"]
        q_, k_, v_ = qkv.split(d, dim=-1)
        hd = d // heads
        outs = []
        for head in range(heads):
            sl = slice(head * hd, (head + 1) * hd)
            scores = q_[..., sl] @ k_[..., sl].transpose(1, 2) / math.sqrt(hd)
            outs.append(torch.softmax(scores, dim=-1) @ v_[..., sl])
        seq = seq + torch.cat(outs, dim=-1) @ sd[k + "attn.proj.weight"].T + sd[k + "attn.proj.bias"]
        y = _layer_norm(seq, sd[k + "norm2.weight"], sd[k + "norm2.bias"], eps)
        hidden = y @ sd[k + "mlp.fc1.weight"].T + sd[k + "mlp.fc1.bias"]
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        seq = seq + hidden @ sd[k + "mlp.fc2.weight"].T + sd[k + "mlp.fc2.bias"]
    seq = _layer_norm(seq, sd["norm.weight"], sd["norm.bias"], eps)
    return seq[:, 1:].mean(dim=1)


@pytest.mark.parametrize("layout", ["2023", "2024"])
def test_prithvi_forward_equals_reference_for_both_checkpoint_layouts(tmp_path: Path, layout: str) -> None:
    sd = random_checkpoint(TINY)
    path = tmp_path / f"ckpt-{layout}.pt"
    torch.save(sd if layout == "2023" else _to_2024_layout(sd), path)
    encoder = build_encoder(ModelConfig.from_dict(TINY), weights=path)
    x = torch.randn(3, 6, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = encoder.module(x)
    expected = reference_forward(sd, x, TINY)
    rel = (ours.double() - expected).norm() / expected.norm()
    assert rel < 1e-5, float(rel)
    assert encoder.weights.sha256 and len(encoder.weights.sha256) == 64


def test_checkpoint_with_wrong_shape_names_the_key(tmp_path: Path) -> None:
    sd = random_checkpoint(TINY)
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(10, 64)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"blocks\.1\.mlp\.fc1\.weight.*shape \(10, 64\)"):
        build_encoder(ModelConfig.from_dict(TINY), weights=tmp_path / "bad.pt")


def test_checkpoint_missing_or_unexpected_encoder_keys_are_named(tmp_path: Path) -> None:
    sd = random_checkpoint(TINY)
    del sd["blocks.0.attn.proj.bias"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match=r"lacks encoder weight 'blocks\.0\.attn\.proj\.bias'"):
        build_encoder(ModelConfig.from_dict(TINY), weights=tmp_path / "missing.pt")
    sd = random_checkpoint(TINY)
    sd["blocks.2.norm1.weight"] = torch.ones(64)  # a third block the model does not have
    torch.save(_to_2024_layout(sd), tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match=r"unexpected encoder weight 'blocks\.2\.norm1\.weight'"):
        build_encoder(ModelConfig.from_dict(TINY), weights=tmp_path / "extra.pt")


def test_unreadable_checkpoint_and_pickled_code_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights"):
        build_encoder(ModelConfig.from_dict(TINY), weights=tmp_path / "junk.pt")

    class Evil:
        def __reduce__(self):  # would run code under a plain torch.load
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="cannot read weights"):
        build_encoder(ModelConfig.from_dict(TINY), weights=tmp_path / "evil.pt")


class CustomHead:
    """A class a checkpoint may pickle by reference (a training script's own module)."""

    def __init__(self) -> None:
        self.weight = torch.zeros(3)


def test_a_pickled_custom_class_is_refused_in_one_line_without_torchs_advice(tmp_path: Path) -> None:
    from tests.cli import assert_one_line_error, run

    path = tmp_path / "custom.pt"
    torch.save({"model": random_checkpoint(TINY), "head": CustomHead()}, path)
    with pytest.raises(WeightsError) as refused:
        build_encoder(ModelConfig.from_dict(TINY), weights=path)
    message = str(refused.value)
    assert "\n" not in message
    assert "weights_only" not in message and "add_safe_globals" not in message
    assert re.search(r"pickle checkpoint that stores Python objects \(tests\.test_models\.CustomHead\)", message)
    assert ".safetensors" in message
    # Through the CLI: one red line, exit 1.
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    ben = tmp_path / "ben"
    fakedata.make_bigearthnet(ben, splits={"val": 1})
    result = run(
        "embed", "-m", config, "-d", "bigearthnet", "--data-dir", ben, "--split", "val", "--store", tmp_path / "s",
        "--weights", path, "--workers", "0",
    )  # fmt: skip
    assert_one_line_error(result, r"cannot read weights .*custom\.pt: it is a pickle checkpoint")
    assert "weights_only" not in result.output


def test_no_weights_fails_with_instructions_and_never_falls_back() -> None:
    with pytest.raises(WeightsError, match=r"rsir download prithvi.*--weights PATH.*--random-weights"):
        build_encoder(get_model_config("prithvi"))
    with pytest.raises(UsageError, match="exclude each other"):
        build_encoder(get_model_config("prithvi"), weights=Path("x.pt"), random_weights=True)


def test_prithvi_100m_has_the_published_encoder_layout() -> None:
    """The real config builds the 2023 checkpoint's encoder: names and shapes as published."""
    encoder = build_encoder(get_model_config("prithvi"), random_weights=True)
    shapes = {k: tuple(v.shape) for k, v in encoder.module.state_dict().items()}
    assert shapes["patch_embed.proj.weight"] == (768, 6, 1, 16, 16)
    assert shapes["cls_token"] == (1, 1, 768)
    assert shapes["blocks.11.attn.qkv.weight"] == (2304, 768)
    assert shapes["blocks.11.mlp.fc1.weight"] == (3072, 768)
    assert "blocks.12.norm1.weight" not in shapes and shapes["norm.weight"] == (768,)
    assert "pos_embed" not in shapes  # a fixed buffer, recomputed for 1 frame x 14 x 14
    assert tuple(encoder.module.pos_embed.shape) == (1, 197, 768)
    assert encoder.provenance()["random_weights"] is True
    # Random weights are seeded: two builds are identical.
    again = build_encoder(get_model_config("prithvi"), random_weights=True)
    assert torch.equal(again.module.blocks[3].attn.qkv.weight, encoder.module.blocks[3].attn.qkv.weight)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["timm", "torchvision"])
def test_vit_cls_embedding_equals_torchvision_forward(tmp_path: Path, layout: str) -> None:
    """torchvision's vit_b_16 forward as the paper's code runs it == our timm ViT with converted weights."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(weights=None).eval()
    for param in reference.parameters():  # away from the near-zero init so the test has teeth
        param.data.add_(torch.randn_like(param) * 0.02)
    path = tmp_path / "vit.pth"
    torch.save(reference.state_dict(), path)
    if layout == "timm":  # our converter's output saved in timm layout must load too
        from rsir_cli.models.vit import torchvision_to_timm

        torch.save(torchvision_to_timm(reference.state_dict()), path)
    encoder = build_encoder(get_model_config("vit-tv"), weights=path)
    rgb = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        x = reference._process_input(rgb)
        x = torch.cat([reference.class_token.expand(2, -1, -1), x], dim=1)
        expected = reference.encoder(x)[:, 0]
        ours = encoder.module(rgb)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_model_registry_configs_match_the_paper() -> None:
    prithvi = get_model_config("prithvi")
    assert prithvi.read_bands == ("B02", "B03", "B04", "B8A", "B11", "B12")
    assert prithvi.mean[0] == 775.2290211032589 and prithvi.std[5] == 1154.505683480695
    rgb = get_model_config("prithvi-rgb")
    assert rgb.read_bands == ("B02", "B03", "B04") and rgb.fill_bands == ("B8A", "B11", "B12")
    vit = get_model_config("vit")
    assert vit.read_bands == ("B04", "B03", "B02") and vit.mean == (5000.0,) * 3 and vit.pooling == "cls"
    with pytest.raises(UsageError, match="unknown model 'nope'.*prithvi"):
        get_model_config("nope")


def test_own_block_equals_timms_and_seeded_builds_draw_the_same_numbers() -> None:
    """rsir's Block is timm's Block bit for bit: same weights from the same seed, same output."""
    import functools

    from timm.models.vision_transformer import Block as TimmBlock

    from rsir_cli.models.layers import Block

    for eps in (1e-6, 1e-5):
        torch.manual_seed(0)
        ours = Block(64, 4, 4.0, eps=eps)
        torch.manual_seed(0)
        theirs = TimmBlock(64, 4, 4.0, qkv_bias=True, norm_layer=functools.partial(torch.nn.LayerNorm, eps=eps))
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())
        with torch.no_grad():  # away from LayerNorm's ones and zeros
            for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters(), strict=True):
                p_ours.add_(torch.randn_like(p_ours) * 0.1)
                p_theirs.copy_(p_ours)
        x = torch.randn(3, 17, 64)
        with torch.inference_mode():
            assert torch.equal(ours(x), theirs(x))


def test_random_prithvi_weights_are_the_seeded_timm_built_ones() -> None:
    """Random-weight stores made when Prithvi was built from timm's Block keep their embeddings."""
    import functools

    from timm.models.vision_transformer import Block as TimmBlock

    from rsir_cli.models.prithvi import PatchEmbed3D

    config = ModelConfig.from_dict(TINY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # rsir's RANDOM_SEED, in the construction order of the old encoder
        patch = PatchEmbed3D(6, 64, 8, 1)
        norm = functools.partial(torch.nn.LayerNorm, eps=1e-6)
        blocks = [TimmBlock(64, 4, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(2)]
    encoder = build_encoder(config, random_weights=True)
    assert torch.equal(encoder.module.patch_embed.proj.weight, patch.proj.weight)
    for ours, theirs in zip(encoder.module.blocks, blocks, strict=True):
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in ours.state_dict().items())


def _timm_vit(name: str, **kwargs):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


def test_ssl4eo_vit_equals_timm_vit_small_as_torchgeo_builds_it(tmp_path: Path) -> None:
    """torchgeo's vit_small_patch16_224(weights) is timm's vit_small_patch16_224 with in_chans 13."""
    config = get_model_config("ssl4eo-vit-s16-moco")
    assert config.bands == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    reference = _timm_vit("vit_small_patch16_224", in_chans=13)
    state = reference.state_dict()
    state.update({"head.weight": torch.zeros(1000, 384), "head.bias": torch.zeros(1000)})  # a classifier is ignored
    torch.save(state, tmp_path / "ssl4eo.pth")
    encoder = build_encoder(config, weights=tmp_path / "ssl4eo.pth")
    x = torch.randn(2, 13, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = encoder.module(x)
        expected = reference(x)  # num_classes=0: the CLS token after the final norm
    assert ours.shape == (2, 384)
    assert float((ours - expected).norm() / expected.norm()) < 1e-5


def test_ssl4eo_configs_name_torchgeo_published_weights() -> None:
    from tests.reference import torchgeo_source

    source = torchgeo_source("vit").read_text()
    for model, enum in [("ssl4eo-vit-s16-moco", "SENTINEL2_ALL_MOCO"), ("ssl4eo-vit-s16-dino", "SENTINEL2_ALL_DINO")]:
        weights = get_model_config(model).weights
        url = f"hf.co/{weights.repo_id}/resolve/{weights.revision}/{weights.filename}"
        block = source[source.index(f"    {enum} = Weights(") :][:600]
        assert url in block and "'in_chans': 13" in block and "_zhu_xlab_transforms" in block
        assert weights.filename.endswith(f"-{weights.sha256_prefix}.pth")


def test_own_vit_equals_timm_vit_bit_for_bit_and_needs_no_timm_to_load(tmp_path: Path) -> None:
    reference = _timm_vit("vit_small_patch16_224", img_size=32, in_chans=3)
    config = ModelConfig.from_dict(
        {
            "name": "tiny-vit",
            "description": "test",
            "architecture": "timm_vit",
            "timm_name": "vit_small_patch16_224",
            "bands": ["B04", "B03", "B02"],
            "mean": [0.0] * 3,
            "std": [1.0] * 3,
            "input_size": 32,
            "pooling": "cls",
            "embed_dim": 384,
        }
    )
    torch.save(reference.state_dict(), tmp_path / "vit.pth")
    encoder = build_encoder(config, weights=tmp_path / "vit.pth")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(encoder.module(x), reference(x))


def test_building_from_a_checkpoint_imports_neither_timm_nor_torchvision(tmp_path: Path) -> None:
    import subprocess
    import sys

    sd = random_checkpoint(TINY)
    torch.save(_to_2024_layout(sd), tmp_path / "ckpt.pt")
    (tmp_path / "tiny.yaml").write_text(__import__("json").dumps(TINY))
    script = (
        "import sys; from pathlib import Path; from rsir_cli.models import build_encoder, get_model_config; "
        f"e = build_encoder(get_model_config({str(tmp_path / 'tiny.yaml')!r}), weights=Path({str(tmp_path / 'ckpt.pt')!r})); "
        "print(sorted(m for m in ('timm', 'torchvision', 'torch._dynamo') if m in sys.modules))"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_checkpoint_tensors_are_assigned_as_float32_without_random_init(tmp_path: Path) -> None:
    sd = {k: v.half() for k, v in random_checkpoint(TINY).items()}
    torch.save(sd, tmp_path / "half.pt")
    encoder = build_encoder(ModelConfig.from_dict(TINY), weights=tmp_path / "half.pt")
    weight = encoder.module.blocks[1].mlp.fc2.weight
    assert weight.dtype == torch.float32 and not weight.is_meta and not weight.requires_grad
    assert torch.equal(weight, sd["blocks.1.mlp.fc2.weight"].float())
    assert not any(t.is_meta for t in [*encoder.module.parameters(), *encoder.module.buffers()])
    assert tuple(encoder.module.pos_embed.shape) == (1, 17, 64)


def test_weights_source_is_typed_and_round_trips() -> None:
    from rsir_cli.models import WeightsSource

    vit_tv = get_model_config("vit-tv").weights
    assert isinstance(vit_tv, WeightsSource)
    assert (vit_tv.source, vit_tv.sha256_prefix, vit_tv.license) == ("url", "c867db91", "BSD-3-Clause")
    assert vit_tv.location == "https://download.pytorch.org/models/vit_b_16-c867db91.pth"
    moco = get_model_config("ssl4eo-vit-s16-moco").weights
    assert moco.location.startswith("https://huggingface.co/torchgeo/vit_small_patch16_224_sentinel2_all_moco@1cb683f6")
    assert WeightsSource.from_dict(moco.to_dict()) == moco
    for bad, message in [
        ({"source": "ftp"}, "source must be one of"),
        ({"source": "huggingface", "repo_id": "x/y"}, "need repo_id and filename"),
        ({"source": "url"}, "need a url"),
        ({"source": "url", "url": "https://x", "sha": "1"}, "unknown weights key"),
    ]:
        with pytest.raises(UsageError, match=message):
            WeightsSource.from_dict(bad, "test.yaml")


def test_every_registered_model_round_trips_through_the_store_provenance() -> None:
    import json

    from rsir_cli.models import config_from_provenance, model_names

    for name in model_names():
        config = get_model_config(name)
        assert config_from_provenance(json.loads(json.dumps(config.provenance()))) == config, name


def test_provenance_written_before_the_weights_dataclass_still_loads() -> None:
    """Stores made with rsir 0.2 record ``weights`` as the YAML's dict and lack the new fields."""
    from dataclasses import asdict

    from rsir_cli.models import config_from_provenance

    old = asdict(get_model_config("prithvi"))
    old["weights"] = {
        "source": "huggingface",
        "repo_id": "ibm-nasa-geospatial/Prithvi-EO-1.0-100M",
        "filename": "Prithvi_EO_V1_100M.pt",
        "license": "Apache-2.0",
    }
    for key in ("inputs", "any_bands", "wavelengths", "sensor"):
        del old[key]
    assert config_from_provenance({"model_config": old}) == get_model_config("prithvi")
