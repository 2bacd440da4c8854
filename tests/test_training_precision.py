"""bf16 autocast for CPU training (`modules.training.precision`) and the VAE loss under it."""

from __future__ import annotations

import pytest
import torch

from modules.embedded.config import build_vae
from modules.training import precision
from modules.training.autoencoder_training import autoencoder_loss
from tests.test_embedded_training import TINY_VAE

native_bf16 = pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="this CPU has no native bf16")


def _conv_dtype() -> torch.dtype:
    return torch.nn.functional.conv2d(torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3)).dtype


def test_autocast_is_off_unless_requested() -> None:
    with precision.cpu_bf16_autocast(False):
        assert _conv_dtype() == torch.float32
    assert precision.describe_cpu_bf16(False).startswith("fp32")


def test_a_cpu_without_native_bf16_trains_in_fp32(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with precision.cpu_bf16_autocast(True):
        assert _conv_dtype() == torch.float32
    assert precision.describe_cpu_bf16(True) == "fp32 (this CPU has no native bf16)"


@native_bf16
def test_requested_on_a_native_bf16_cpu_convolutions_run_in_bf16() -> None:
    with precision.cpu_bf16_autocast(True):
        assert _conv_dtype() == torch.bfloat16
    assert _conv_dtype() == torch.float32
    assert precision.describe_cpu_bf16(True).startswith("bf16 autocast")


@native_bf16
def test_vae_loss_under_bf16_is_fp32_close_to_the_fp32_loss_and_trains() -> None:
    torch.manual_seed(0)
    vae = build_vae(TINY_VAE)
    pixels = torch.rand(4, 3, 64, 64) * 2 - 1

    def loss(bf16: bool) -> torch.Tensor:
        with precision.cpu_bf16_autocast(bf16):
            return autoencoder_loss(vae, pixels, kl_weight=1e-5, foreground_weight=5.0, edge_weight=2.0,
                                    generator=torch.Generator().manual_seed(1)).loss

    reference, mixed = loss(False), loss(True)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    assert abs(mixed.item() - reference.item()) < 0.02 * reference.item()
    mixed.backward()
    grads = [p.grad for p in vae.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
