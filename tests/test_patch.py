"""patch_mlp on CPU: Gemma from transformers (tiny configs), openpi / lerobot nesting,
SigLIP's fc1 / fc2 only on request."""

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import w4a16  # noqa: E402
from models import tiny_gemma  # noqa: E402


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "int4"])
@pytest.mark.parametrize("fuse", [True, False])
def test_patch_gemma_stays_close_to_bf16(fmt, fuse):
    model = tiny_gemma()
    patched = copy.deepcopy(model)
    report = w4a16.patch_mlp(patched, format=fmt, fuse_gate_up=fuse)
    assert len(report.converted) == (4 if fuse else 6) and not report.skipped
    assert report.bytes_after < report.bytes_before / 3
    ids = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        ref = model.model(ids).last_hidden_state.double()
        out = patched.model(ids).last_hidden_state.double()
        # the MLP alone: 4-bit weights cost ~10 % relative error there
        h = torch.randn(2, 12, 128, dtype=torch.bfloat16)
        mlp_ref = model.model.layers[0].mlp(h).double()
        mlp_out = patched.model.layers[0].mlp(h).double()
    # stated bounds: the residual stream within 5 %, one MLP (three 4-bit matmuls whose
    # errors compound, ~10 % each) within 30 %
    assert (torch.linalg.norm(out - ref) / torch.linalg.norm(ref)).item() < 0.05
    assert (torch.linalg.norm(mlp_out - mlp_ref) / torch.linalg.norm(mlp_ref)).item() < 0.30
    mlp = patched.model.layers[0].mlp
    assert isinstance(mlp, w4a16.patch.GatedMLP) if fuse else isinstance(mlp.gate_proj, w4a16.nn.QuantizedLinear)


class Holder(torch.nn.Module):
    """Stand-in for a container of openpi / lerobot whose attribute path is kept."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


def pi0_like():
    """openpi PI0Pytorch nesting: paligemma_with_expert.{paligemma.language_model,
    gemma_expert.model}.layers[i].mlp, with Gemma decoder layers from transformers."""
    language = tiny_gemma(1).model
    expert = tiny_gemma(2).model
    return Holder(paligemma_with_expert=Holder(paligemma=Holder(language_model=language),
                                               gemma_expert=Holder(model=expert)))


@pytest.mark.parametrize("wrapper", ["openpi", "lerobot"])
def test_patch_finds_pi05_paths(wrapper):
    policy = pi0_like() if wrapper == "openpi" else Holder(model=pi0_like())
    prefix = "" if wrapper == "openpi" else "model."
    report = w4a16.patch_mlp(policy, format="nvfp4")
    names = {name for name, _, _ in report.converted}
    for i in range(2):
        assert f"{prefix}paligemma_with_expert.paligemma.language_model.layers.{i}.mlp.gate_up" in names
        assert f"{prefix}paligemma_with_expert.gemma_expert.model.layers.{i}.mlp.down_proj" in names
    # only the expert, by pattern
    policy = pi0_like()
    report = w4a16.patch_mlp(policy, format="int4", include=["*gemma_expert*"], fuse_gate_up=False)
    assert len(report.converted) == 6 and all("gemma_expert" in n for n, _, _ in report.converted)
    policy = pi0_like()
    report = w4a16.patch_mlp(policy, exclude=["*layers.0.mlp"])
    assert len(report.converted) == 4 and all("layers.1" in n for n, _, _ in report.converted)


def test_siglip_mlp_only_on_request_and_skipped_with_reason():
    # SigLIP's MLP is hidden -> 4304 -> hidden: fc2 has K = 4304 = 16 * 269, a multiple of
    # NVFP4's block but not of MXFP4's (32)
    def siglip():
        return Holder(vision=Holder(mlp=Holder(fc1=torch.nn.Linear(64, 4304), fc2=torch.nn.Linear(4304, 64))))

    assert not w4a16.patch_mlp(siglip()).converted  # fc1/fc2 not touched by default
    assert len(w4a16.patch_mlp(siglip(), format="nvfp4", include=["vision.mlp"]).converted) == 2
    model = siglip()
    report = w4a16.patch_mlp(model, format="mxfp4", include=["vision.mlp"])
    assert [n for n, _, _ in report.converted] == ["vision.mlp.fc1"]
    assert report.skipped[0][0] == "vision.mlp.fc2" and "4304" in report.skipped[0][1]
    assert isinstance(model.vision.mlp.fc2, torch.nn.Linear)  # left as it was


def test_patch_rejects_arguments_it_would_otherwise_ignore_or_misread():
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got NoneType"):
        w4a16.patch_mlp(None)
    with pytest.raises(ValueError, match="group_size: only int4 takes one; nvfp4 scales blocks of 16, got 32"):
        w4a16.patch_mlp(tiny_gemma(), format="nvfp4", group_size=32)
    with pytest.raises(TypeError, match="include: expected fnmatch patterns"):
        w4a16.patch_mlp(tiny_gemma(), include=[3])
    # one string is one pattern, not a pattern per letter
    report = w4a16.patch_mlp(tiny_gemma(), exclude="*layers.0.mlp", fuse_gate_up=False)
    assert report.converted and all("layers.0." not in n for n, _, _ in report.converted)
