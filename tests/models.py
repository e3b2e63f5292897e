"""Small models, quantizer tables and random weights the tests share (import after
pytest.importorskip("torch"))."""

import numpy as np
import torch

import w4a16

# every format and INT4 variant the GPU kernels special-case, by name
QUANTIZERS = {
    "nvfp4": w4a16.quantize_nvfp4,
    "mxfp4": w4a16.quantize_mxfp4,
    "int4-g32": lambda w: w4a16.pack_int4(w, 32),
    "int4-g64-asym": lambda w: w4a16.pack_int4(w, 64, symmetric=False),
    "int4-g128": lambda w: w4a16.pack_int4(w, 128),
    "int4-g128-asym": lambda w: w4a16.pack_int4(w, 128, symmetric=False),
    "int4-channel": lambda w: w4a16.pack_int4(w, -1),
}


class GemmaLikeMLP(torch.nn.Module):
    """down(act(gate(x)) * up(x)) with separate bias-free Linears, as Gemma's MLP (act: tanh GELU)."""

    def __init__(self, hidden: int, intermediate: int, act: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.gate_proj = torch.nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = torch.nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = torch.nn.Linear(intermediate, hidden, bias=False)
        self.act_fn = torch.nn.GELU(approximate="tanh") if act is None else act

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def random_weight(rng, n: int, k: int, dtype: torch.dtype, device: str = "cuda") -> torch.Tensor:
    """Gaussian [n, k] weight with a random overall scale (0.005 .. 0.5)."""
    w = rng.standard_normal((n, k)).astype(np.float32) * rng.uniform(0.005, 0.5)
    return torch.from_numpy(w).to(device, dtype)


def tiny_gemma(seed: int = 0, hidden: int = 128, intermediate: int = 512, vocab: int = 256, heads: int = 4):
    """A 2-layer GemmaForCausalLM with random weights, bf16, eval mode (needs transformers)."""
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    config = GemmaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=1, head_dim=32,
                         hidden_activation="gelu_pytorch_tanh")
    return GemmaForCausalLM(config).to(torch.bfloat16).eval()
