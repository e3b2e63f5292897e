"""Small models the tests share."""

import torch


def tiny_gemma(seed: int = 0, hidden: int = 128, intermediate: int = 512, vocab: int = 256, heads: int = 4):
    """A 2-layer GemmaForCausalLM with random weights, bf16, eval mode (needs transformers)."""
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    config = GemmaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=1, head_dim=32,
                         hidden_activation="gelu_pytorch_tanh")
    return GemmaForCausalLM(config).to(torch.bfloat16).eval()
