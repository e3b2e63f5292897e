"""A model factory for `python -m w4a16 export --module cli_model:build` in test_export.py."""

import torch


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj = torch.nn.Linear(64, 128, bias=False)
        self.up_proj = torch.nn.Linear(64, 128, bias=False)
        self.down_proj = torch.nn.Linear(128, 64, bias=False)
        self.act_fn = torch.nn.GELU(approximate="tanh")

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(MLP(), MLP()).to(torch.float16), torch.randn(2, 64, dtype=torch.float16)
