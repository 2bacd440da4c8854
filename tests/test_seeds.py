"""Tests for A1111 seed planning and initial noise."""

from __future__ import annotations

import random

import pytest
import torch

from modules.generation.sampling.seeds import (
    SEED_RANGE,
    SeedError,
    SeedPlan,
    fix_seed,
    make_initial_noise,
    plan_seeds,
    randn,
    slerp,
)

SHAPE = (4, 8, 12)  # latent (C, H, W) of a 96x64 image


def test_plan_seeds_increments_without_variation() -> None:
    plan = plan_seeds(1000, 50, 0.0, batch_size=2, n_iter=3)
    assert plan.all_seeds == (1000, 1001, 1002, 1003, 1004, 1005)
    assert plan.all_subseeds == (50, 51, 52, 53, 54, 55)
    assert (plan.seed, plan.subseed) == (1000, 50)
    assert plan.batch(1, 2) == ([1002, 1003], [52, 53])


def test_plan_seeds_keeps_seed_with_variation_strength() -> None:
    plan = plan_seeds(1000, 50, 0.3, batch_size=2, n_iter=2)
    assert plan.all_seeds == (1000, 1000, 1000, 1000)
    assert plan.all_subseeds == (50, 51, 52, 53)


@pytest.mark.parametrize("seed", [-1, -7, None])
def test_negative_or_missing_seed_is_random_32_bit(seed: int | None) -> None:
    plan = plan_seeds(seed, None, 0.0, batch_size=1, n_iter=2, rng=random.Random(1234))
    expected = random.Random(1234)
    first, second = expected.randrange(SEED_RANGE), expected.randrange(SEED_RANGE)
    assert plan.all_seeds == (first, first + 1)
    assert plan.all_subseeds == (second, second + 1)
    assert 0 <= plan.seed < SEED_RANGE


def test_random_seed_without_rng_is_in_range_and_plan_is_frozen() -> None:
    plan = plan_seeds(-1, -1, 0.0, 1, 1)
    assert isinstance(plan, SeedPlan)
    assert 0 <= plan.seed < SEED_RANGE
    with pytest.raises(AttributeError):
        plan.seed = 3  # type: ignore[misc]


def test_fix_seed_parses_strings() -> None:
    assert fix_seed("42") == 42
    assert fix_seed(7) == 7
    assert 0 <= fix_seed("", random.Random(0)) < SEED_RANGE
    assert 0 <= fix_seed("abc", random.Random(0)) < SEED_RANGE


def test_plan_seeds_rejects_empty_batches() -> None:
    with pytest.raises(SeedError):
        plan_seeds(1, 1, 0.0, batch_size=0, n_iter=1)


def test_noise_is_deterministic_and_matches_manual_seed() -> None:
    first = make_initial_noise(SHAPE, [123, 456], None, 0.0, None)
    second = make_initial_noise(SHAPE, [123, 456], None, 0.0, None)
    assert first.shape == (2, *SHAPE)
    assert first.dtype == torch.float32 and first.device.type == "cpu"
    assert torch.equal(first, second)
    # A1111's CPU path: torch.manual_seed(seed); torch.randn(shape)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(123)
        reference = torch.randn(SHAPE)
    finally:
        torch.random.set_rng_state(state)
    assert torch.equal(first[0], reference)
    assert not torch.equal(first[0], first[1])


def test_noise_does_not_touch_global_rng() -> None:
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    make_initial_noise(SHAPE, [1], [2], 0.5, (64, 64))
    assert torch.equal(torch.rand(3), expected)


def test_batch_seeds_match_individual_noise() -> None:
    plan = plan_seeds(777, 0, 0.0, batch_size=3, n_iter=1)
    batch = make_initial_noise(SHAPE, list(plan.all_seeds), list(plan.all_subseeds), 0.0, None)
    for index, seed in enumerate((777, 778, 779)):
        assert torch.equal(batch[index], randn(seed, SHAPE))


def test_variation_strength_zero_is_plain_noise_and_one_is_subseed_noise() -> None:
    plain = make_initial_noise(SHAPE, [10], None, 0.0, None)
    zero = make_initial_noise(SHAPE, [10], [20], 0.0, None)
    assert torch.equal(plain, zero)
    full = make_initial_noise(SHAPE, [10], [20], 1.0, None)
    assert torch.allclose(full[0], randn(20, SHAPE), atol=1e-5)
    half = make_initial_noise(SHAPE, [10], [20], 0.5, None)
    assert not torch.allclose(half[0], randn(10, SHAPE), atol=1e-3)
    assert not torch.allclose(half[0], randn(20, SHAPE), atol=1e-3)


def test_missing_subseed_uses_zero_like_a1111() -> None:
    noise = make_initial_noise(SHAPE, [10, 11], [20], 1.0, None)
    assert torch.allclose(noise[1], randn(0, SHAPE), atol=1e-5)


def test_slerp_matches_a1111_formula() -> None:
    low, high = randn(1, SHAPE), randn(2, SHAPE)
    val = 0.3
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    omega = torch.acos((low_norm * high_norm).sum(1))
    so = torch.sin(omega)
    expected = (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (
        torch.sin(val * omega) / so
    ).unsqueeze(1) * high
    assert torch.equal(slerp(val, low, high), expected)


def test_slerp_parallel_fallback_keeps_a1111_linear_formula() -> None:
    low = randn(3, SHAPE)
    assert torch.equal(slerp(0.25, low, low.clone()), low * 0.25 + low * 0.75)


def test_seed_resize_from_smaller_places_source_noise_in_centre() -> None:
    # target latent 4x8x12 (96x64 px); source 48x32 px -> latent 4x4x6, centred at dy=2, dx=3
    noise = make_initial_noise(SHAPE, [5], None, 0.0, (48, 32))
    source = randn(5, (4, 4, 6))
    assert torch.equal(noise[0, :, 2:6, 3:9], source)
    border = randn(5, SHAPE)
    assert torch.equal(noise[0, :, :2, :], border[:, :2, :])
    assert torch.equal(noise[0, :, :, :3], border[:, :, :3])


def test_seed_resize_from_larger_crops_centre_of_source_noise() -> None:
    # source 160x96 px -> latent 4x12x20; target 4x8x12 keeps rows 2:10, cols 4:16
    noise = make_initial_noise(SHAPE, [5], None, 0.0, (160, 96))
    source = randn(5, (4, 12, 20))
    assert torch.equal(noise[0], source[:, 2:10, 4:16])


@pytest.mark.parametrize("resize", [None, (-1, -1), (0, 64), (96, 0)])
def test_seed_resize_disabled_values(resize: tuple[int, int] | None) -> None:
    assert torch.equal(make_initial_noise(SHAPE, [5], None, 0.0, resize)[0], randn(5, SHAPE))


def test_seed_resize_with_variation_blends_at_source_size() -> None:
    noise = make_initial_noise(SHAPE, [5], [6], 1.0, (48, 32))
    assert torch.allclose(noise[0, :, 2:6, 3:9], randn(6, (4, 4, 6)), atol=1e-5)


def test_invalid_noise_arguments_raise() -> None:
    with pytest.raises(SeedError):
        make_initial_noise(SHAPE, [], None, 0.0, None)
    with pytest.raises(SeedError):
        make_initial_noise((4, 0, 8), [1], None, 0.0, None)
