"""Quantization and torch.compile of the denoiser (issue 29): torchao int8 on a tiny UNet, applied at load by the
model manager on the PyTorch backend and reloaded when the setting changes, refused on an exported graph; a LoRA
merge reaches a quantized layer; the device line; the Models tab's backend choice and the memory line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from modules.backends.compile import CompileError, compile_module, is_compiled
from modules.backends.quantize import QuantizationError, quantize_module, weight_bytes
from modules.backends.registry import BackendError, get_backend
from modules.backends.tuning import Tuning, check_tuning, wanted


def _unet():  # noqa: ANN202
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1,
                                cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()


def _call(unet) -> torch.Tensor:  # noqa: ANN001
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return unet(torch.randn(2, 4, 8, 8, generator=gen), torch.tensor([500.0, 500.0]),
                    encoder_hidden_states=torch.randn(2, 7, 32, generator=gen)).sample


@pytest.mark.parametrize(("mode", "tolerance"), [("int8_weights", 2e-2), ("int8_dynamic", 5e-2)])
def test_int8_quantization_shrinks_the_linear_weights_and_stays_close(mode: str, tolerance: float) -> None:
    unet = _unet()
    reference, before = _call(unet), weight_bytes(unet)
    quantize_module(unet, mode)
    linear = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    assert type(linear.weight).__name__ != "Parameter" and linear.weight.dtype == torch.float32
    assert weight_bytes(unet) < 0.9 * before  # int8 linear weights (convs stay float)
    out = _call(unet)
    relative = float((out - reference).abs().max() / reference.abs().max())
    assert 0 < relative < tolerance


def test_unknown_modes_are_refused_by_name() -> None:
    with pytest.raises(QuantizationError, match="int8_weights"):
        quantize_module(torch.nn.Linear(2, 2), "int3")
    with pytest.raises(CompileError, match="max-autotune"):
        compile_module(torch.nn.Linear(2, 2), "fastest")
    layer = torch.nn.Linear(2, 2)
    compile_module(layer, "default")  # compiled in place (on the first call), the module stays the same object
    assert is_compiled(layer) and not is_compiled(torch.nn.Linear(2, 2))


def test_tuning_from_settings_and_refusal_on_exported_graphs() -> None:
    settings = SimpleNamespace(unet_quantization="int8_weights", torch_compile=True, torch_compile_mode="default")
    tuning = wanted(settings)
    assert tuning == Tuning("int8_weights", "default") and tuning.active
    assert tuning.describe() == "denoiser int8 weights, torch.compile default"
    check_tuning(get_backend("torch"), settings)  # PyTorch runs it
    with pytest.raises(BackendError, match=r"UNet quantization \(int8_weights\) and torch.compile runs on the "
                                           r"PyTorch backend only.*ONNX Runtime"):
        check_tuning(get_backend("onnx"), settings)
    plain = SimpleNamespace(unet_quantization="none", torch_compile=False, torch_compile_mode="default")
    check_tuning(get_backend("openvino"), plain)
    assert not wanted(plain).active and wanted(plain).describe() == ""


def test_device_names_cover_each_accelerator() -> None:
    from modules.flags import parse_flags
    from modules.models.devices import device_line, device_name

    fake = SimpleNamespace(version=SimpleNamespace(hip=None),
                           cuda=SimpleNamespace(get_device_name=lambda i: "NVIDIA H100"),
                           xpu=SimpleNamespace(get_device_name=lambda i: "Intel Arc A770"))
    assert device_name(fake, "cuda") == "CUDA (NVIDIA H100)"
    fake.version.hip = "6.2"
    assert device_name(fake, "cuda") == "ROCm (NVIDIA H100)"
    assert device_name(fake, "xpu") == "XPU (Intel Arc A770)"
    assert device_name(fake, "mps") == "MPS (Apple GPU)" and device_name(fake, "cpu") == "CPU"
    assert device_line(parse_flags(["--use-cpu", "all"])) == "CPU (--use-cpu), float32"


def _lora_merges_into_quantized(pipe, tmp_path) -> None:  # noqa: ANN001
    """A LoRA is merged into the dequantized weights for the job; the quantized weights come back after."""
    from modules.generation.addons.lora import LoraUse, apply_loras, read_lora_file
    from tests.fixtures.tiny_networks import kohya_lora_state, write_safetensors

    path = write_safetensors(tmp_path / "k.safetensors", kohya_lora_state(pipe))
    module = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k
    original = module.weight
    with apply_loras(pipe, [LoraUse("k", path, read_lora_file(path))]) as report:
        assert report.patched > 0 and type(module.weight).__name__ == "Parameter"
        assert not torch.allclose(module.weight, original.dequantize())
    assert module.weight is original


def test_quantization_at_load_reload_on_change_and_refusal(studio_factory, tmp_path) -> None:
    from modules.backends.status import backend_status, set_model_backend
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job
    from webui.progress import final_status

    server = studio_factory(("--nowebui",))
    ctx = server.ctx
    name = ctx.models.active.info.name
    ctx.settings.update({"unet_quantization": "int8_weights"})
    req = Txt2ImgRequest(prompt="x", steps=1, width=64, height=64, seed=1, sampler_name="Euler")
    job = submit_job(ctx, req, owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    unet = ctx.models.active.model.pipeline.unet
    assert type(unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight).__name__ != "Parameter"
    assert "int8 weights" in job.result.memory_mode and job.result.peak_memory_mb > 0
    _lora_merges_into_quantized(ctx.models.active.model.pipeline, tmp_path)
    assert "memory: none; denoiser int8 weights; peak" in final_status(job)[0]
    rows = dict(backend_status(ctx, ctx.catalog.title(ctx.models.active.info)))
    assert "peak" in rows["Last job"] and rows["Device"].endswith("float32")
    assert rows["Quantization / compile"] == "int8 weights"
    with server.client() as client:  # the A1111 memory route says the device and the memory mode too
        memory = client.get("/sdapi/v1/memory").json()
    assert memory["device"] == rows["Device"] and memory["memory_mode"] == "none"

    # an exported-graph backend for this model: refused at submit, naming PyTorch and the setting
    assert set_model_backend(ctx, name, "onnx") == f"{name} runs on ONNX Runtime"
    assert ctx.settings.current.backend_by_model == {name: "onnx"}
    with pytest.raises(BackendError, match="PyTorch backend only"):
        submit_job(ctx, req, owner="t", source="test")
    assert set_model_backend(ctx, name, "default").endswith("(the default)")
    assert ctx.settings.current.backend_by_model == {}

    ctx.settings.update({"unet_quantization": "none"})  # the next job loads the model again, unquantized
    job = submit_job(ctx, req, owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    unet = ctx.models.active.model.pipeline.unet
    assert type(unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q.weight).__name__ == "Parameter"
    assert "int8" not in job.result.memory_mode


def test_token_merging_is_a_setting_and_unknown_options_are_named() -> None:
    from modules.api.sdapi_options import plan_options_change

    change = plan_options_change({"token_merging_ratio": 0.5, "some_option": 1}, {})
    assert change.settings == {"token_merging_ratio": 0.5}  # modules/backends/token_merging.py
    assert change.ignored == {"some_option": "not a setting of this studio"}
