"""A1111's random number sources: CUDA's randn computed on the CPU (GPU/NV), through the studio's noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.generation.sampling.a1111_noise import SeedStreams
from modules.generation.sampling.rng import PhiloxGenerator, check_source, randn
from modules.generation.sampling.seeds import make_initial_noise

#: ``torch.manual_seed(0); torch.randn(8, 8, device="cuda")`` as PyTorch prints it (4 decimals): a published
#: CUDA output, the reference for A1111's GPU source
CUDA_SEED0_8X8 = [
    [-0.9247, -0.4253, -2.6438, 0.1452, -0.1209, -0.5797, -0.6229, -0.3284],
    [-1.0745, -0.3631, -1.6711, 2.2655, 0.3117, -0.1842, 1.2866, 1.1820],
    [-0.1271, 1.2169, 1.4353, 1.0605, -0.4941, -1.4244, -0.7244, -1.2973],
    [0.0697, -0.0074, 1.8969, 0.6878, -0.0779, -0.8373, 1.3506, -0.2879],
    [-0.5965, -0.3283, -0.9086, -0.8059, -0.7407, -0.0504, 0.5435, 1.5150],
    [0.0141, 0.4532, 1.6349, 0.7124, -0.1806, 1.0252, -1.4622, -0.7554],
    [-0.1836, 0.3824, 0.3918, -0.0830, 0.8971, -1.1123, 0.1116, 0.4863],
    [-0.5499, -0.3231, -0.5469, 0.9049, 0.2837, 0.1210, 0.4730, -1.0823],
]


def test_gpu_source_gives_cudas_numbers() -> None:
    ours = randn(0, (8, 8), "GPU").numpy()
    assert np.abs(ours - np.array(CUDA_SEED0_8X8)).max() < 6e-5
    assert torch.equal(randn(0, (8, 8), "NV"), randn(0, (8, 8), "GPU"))
    assert not torch.allclose(randn(0, (8, 8), "CPU"), randn(0, (8, 8), "GPU"))


def test_stream_continues_and_seeds_differ() -> None:
    gen = PhiloxGenerator(1234)
    first, second = gen.randn((4, 8, 8)), gen.randn((4, 8, 8))
    assert not torch.equal(first, second) and torch.equal(first, randn(1234, (4, 8, 8), "GPU"))
    assert not torch.equal(first, randn(1235, (4, 8, 8), "GPU"))
    values = PhiloxGenerator(7).randn((200_000,))
    assert abs(float(values.mean())) < 0.01 and abs(float(values.std()) - 1) < 0.01


def test_seed_streams_skip_the_initial_draw_per_source() -> None:
    x = torch.zeros(2, 4, 8, 8)
    streams = SeedStreams([3, 4], source="GPU")
    draw = streams.randn_like(x)
    assert draw.shape == x.shape
    for i, seed in enumerate((3, 4)):
        gen = PhiloxGenerator(seed)
        gen.randn((4, 8, 8))
        assert torch.equal(draw[i], gen.randn((4, 8, 8)))
    assert torch.equal(streams.first_draws(x)[1], randn(4, (4, 8, 8), "GPU"))


def test_initial_noise_uses_the_source() -> None:
    gpu = make_initial_noise((4, 8, 8), [5], None, 0.0, None, source="GPU")
    assert torch.equal(gpu[0], randn(5, (4, 8, 8), "GPU"))
    cpu = make_initial_noise((4, 8, 8), [5], None, 0.0, None)
    assert torch.equal(cpu[0], torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(5)))


def test_unknown_source_is_refused() -> None:
    assert check_source("gpu") == "GPU"
    with pytest.raises(ValueError, match="one of: GPU, CPU, NV"):
        check_source("TPU")
