"""Drop-in modules on the GPU: torch.compile(fullgraph) of a patched Gemma decoder layer
with zero graph breaks, CUDA-graph replay of a patched MLP stack equal to eager bit for
bit, and the 16-bit weights released after conversion. Skipped without a GPU."""


import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import w4a16  # noqa: E402
from w4a16.timing import capture  # noqa: E402

pytestmark = pytest.mark.gpu


def gemma_layer():
    from transformers import GemmaConfig
    from transformers.models.gemma.modeling_gemma import GemmaDecoderLayer, GemmaRotaryEmbedding

    config = GemmaConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=8, num_key_value_heads=1,
                         head_dim=128, hidden_activation="gelu_pytorch_tanh")  # the Pi0.5 action expert's shape
    config._attn_implementation = "sdpa"  # unset, transformers looks it up at run time (a graph break of its own)
    torch.manual_seed(0)
    layer = GemmaDecoderLayer(config, layer_idx=0).cuda().to(torch.bfloat16).eval()
    return layer, GemmaRotaryEmbedding(config).cuda()


@pytest.mark.parametrize("fmt", ["nvfp4", "int4"])
def test_compile_fullgraph_of_patched_decoder_layer(fmt):
    layer, rotary = gemma_layer()
    w4a16.patch_mlp(layer, format=fmt)
    x = torch.randn(1, 50, 1024, device="cuda", dtype=torch.bfloat16)
    position_ids = torch.arange(50, device="cuda")[None]
    embeddings = rotary(x, position_ids)

    def run(hidden):
        out = layer(hidden, position_embeddings=embeddings, position_ids=position_ids)
        return out[0] if isinstance(out, tuple) else out

    explanation = torch._dynamo.explain(run)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(run, fullgraph=True)
    with torch.no_grad():
        eager, fast = run(x), compiled(x)
    assert torch.allclose(eager.float(), fast.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "int4"])
def test_cuda_graph_replay_of_mlp_stack_matches_eager(fmt):
    torch.manual_seed(1)
    stack = torch.nn.Sequential(*[transformers.models.gemma.modeling_gemma.GemmaMLP(
        transformers.GemmaConfig(hidden_size=1024, intermediate_size=4096, hidden_activation="gelu_pytorch_tanh"))
        for _ in range(4)]).cuda().to(torch.bfloat16).eval()
    w4a16.patch_mlp(stack, format=fmt)
    static_x = torch.randn(10, 1024, device="cuda", dtype=torch.bfloat16)
    outputs = []
    with torch.no_grad():
        eager = stack(static_x)
        graph = capture(lambda: outputs.append(stack(static_x)))
    static_y = outputs[-1]  # the tensor the graph writes
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_y, eager)
    new_x = torch.randn_like(static_x)
    static_x.copy_(new_x)
    graph.replay()
    torch.cuda.synchronize()
    with torch.no_grad():
        assert torch.equal(static_y, stack(new_x))


def test_conversion_releases_16_bit_weights():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    mlp = transformers.models.gemma.modeling_gemma.GemmaMLP(
        transformers.GemmaConfig(hidden_size=2048, intermediate_size=16384, hidden_activation="gelu_pytorch_tanh"))
    mlp = mlp.cuda().to(torch.bfloat16)
    dense = torch.cuda.memory_allocated() - before
    holder = torch.nn.Sequential(mlp)
    del mlp
    report = w4a16.patch_mlp(holder, format="nvfp4")
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated() - before
    print(f"Gemma-2B MLP on the GPU: {dense / 2**20:.1f} MiB bf16 -> {after / 2**20:.1f} MiB nvfp4")
    assert dense == 3 * 2048 * 16384 * 2
    assert after <= report.bytes_after + 2**20  # only the quantized tensors remain
    assert after < dense / 3.5


@pytest.mark.parametrize("fmt", ["nvfp4", "int4"])
def test_module_moves_between_cpu_and_gpu(fmt):
    torch.manual_seed(2)
    linear = torch.nn.Linear(512, 256).to(torch.bfloat16)
    module = w4a16.FP4Linear.from_linear(linear) if fmt == "nvfp4" else w4a16.Int4Linear.from_linear(linear)
    x = torch.randn(4, 512, dtype=torch.bfloat16)
    on_cpu = module(x)
    module.to("cuda")
    assert module.weight.is_cuda and module.weight_scale.dtype == (torch.float8_e4m3fn if fmt == "nvfp4" else
                                                                   torch.bfloat16)
    on_gpu = module(x.cuda()).cpu()
    # same weights, two different kernels: both within bf16 rounding of the float64 result
    ref = x.double() @ module.quantized_weight().dequantize().double().cpu().T + module.bias.double().cpu()
    for y in (on_cpu, on_gpu):
        assert (torch.linalg.norm(y.double() - ref) / torch.linalg.norm(ref)).item() < 1e-2
    module.to("cpu")
    assert torch.equal(module(x), on_cpu)


@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "int4"])
@pytest.mark.parametrize("m", [1, 50, 1024])  # the small-M kernel, the tensor-core GEMM, dequantize + cuBLAS
def test_backward_on_the_gpu_matches_float64_reference(fmt, m):
    torch.manual_seed(3)
    linear = torch.nn.Linear(1024, 512).to(torch.bfloat16)
    module = (w4a16.Int4Linear.from_linear(linear, 64, symmetric=False) if fmt == "int4" else
              w4a16.FP4Linear.from_linear(linear, fmt)).cuda()
    module.bias.requires_grad_()
    x = torch.randn(m, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad_y = torch.randn(m, 512, device="cuda", dtype=torch.bfloat16)
    module(x).backward(grad_y)
    w = module.quantized_weight().to("cpu").dequantize().double()  # the C reference dequantizer
    want_x, want_bias = grad_y.double().cpu() @ w, grad_y.double().cpu().sum(0)
    assert (x.grad.double().cpu() - want_x).abs().max() <= 2e-2 * want_x.abs().max()
    assert (module.bias.grad.double().cpu() - want_bias).abs().max() <= 2e-2 * want_bias.abs().max()
