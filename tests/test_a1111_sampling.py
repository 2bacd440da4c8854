"""Every A1111 sampler gives A1111's picture: the txt2img runner against A1111's sampling arithmetic.

The reference is computed here the way A1111 samples (``sd_samplers_kdiffusion``): k-diffusion's own
sampler functions and ``CompVisDenoiser`` (fractional CompVis timesteps, ``c_in``/``c_out``), a CFG
denoiser that combines cond/uncond denoised latents as A1111's ``CFGDenoiser`` does, A1111's schedule
choice (sampler default, discarded penultimate sigma), per-image CPU generators that drew the initial
noise and continue their stream for the sampler's noise, and per-seed Brownian trees for the SDE
samplers. Same tiny SD 1.x weights, same prompt conditioning; pictures must agree within 1/255.

k-diffusion's package ``__init__`` imports training extras, so its ``sampling.py``/``external.py`` are
loaded by path under a stub package. The test is skipped, saying why, when k-diffusion is not
installed (``pip install --no-deps k-diffusion==0.1.1.post1 torchdiffeq``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modules.generation.requests import Txt2ImgRequest
from modules.generation.txt2img import OutputOptions, run_txt2img
from modules.jobs.progress import JobControl
from modules.models.catalog import CheckpointInfo
from modules.models.loader import LoadOptions, load_model
from modules.models.manager import ActiveModel

STEPS = 20
SEED = 1234
CFG = 7.0
PROMPT, NEGATIVE = "a red circle", "blurry"

#: A1111 sampler -> (k-diffusion function, default schedule, discards the penultimate sigma)
K_SAMPLERS: dict[str, tuple[str, str | None, bool]] = {
    "DPM++ 2M": ("sample_dpmpp_2m", "karras", False),
    "DPM++ SDE": ("sample_dpmpp_sde", "karras", False),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", "exponential", False),
    "DPM++ 2M SDE Heun": ("sample_dpmpp_2m_sde", "exponential", False),
    "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", "karras", False),
    "DPM++ 3M SDE": ("sample_dpmpp_3m_sde", "exponential", True),
    "Euler a": ("sample_euler_ancestral", None, False),
    "Euler": ("sample_euler", None, False),
    "LMS": ("sample_lms", None, False),
    "Heun": ("sample_heun", None, False),
    "DPM2": ("sample_dpm_2", "karras", True),
    "DPM2 a": ("sample_dpm_2_ancestral", "karras", True),
    "DPM fast": ("sample_dpm_fast", None, False),
    "DPM adaptive": ("sample_dpm_adaptive", None, False),
}
BROWNIAN = {"DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE"}
SCHEDULES = ["Automatic", "Karras", "Uniform", "Exponential"]


def _load_k_diffusion() -> types.SimpleNamespace:
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1 torchdiffeq)")
    for needed in ("torchdiffeq", "torchsde", "scipy"):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"k-diffusion's sampling module needs {needed}, which is not installed")
    name = "_kdiffusion_reference"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = list(spec.submodule_search_locations)  # a stub: the real __init__ never runs
        sys.modules[name] = package
    sampling = importlib.import_module(f"{name}.sampling")
    external = importlib.import_module(f"{name}.external")
    return types.SimpleNamespace(sampling=sampling, external=external)


@pytest.fixture(scope="module")
def kd() -> types.SimpleNamespace:
    return _load_k_diffusion()


@pytest.fixture(scope="module")
def active(tiny_checkpoints, model_cache_dir: Path) -> ActiveModel:
    path = tiny_checkpoints["sd1"]["single"]
    model = load_model(path, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(path, path.name, False), model=model, sha256="0" * 64, load_seconds=0)


class _CompVisUNet(torch.nn.Module):
    """The LDM model interface k-diffusion's CompVisDenoiser wraps, over the pipeline's UNet."""

    def __init__(self, unet: Any, config: dict[str, Any]) -> None:
        super().__init__()
        self.unet = unet
        n = int(config.get("num_train_timesteps", 1000))
        betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas.numpy()), dtype=torch.float32)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=cond).sample


class _GeneratorNoise:
    """A1111's sampler noise: one draw per image from its own generator, after its initial noise."""

    def __init__(self, seeds: list[int], shape: tuple[int, ...]) -> None:
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.shape = shape
        self.initial = torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def __call__(self, *_: Any) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])


def _reference(kd: types.SimpleNamespace, active: ActiveModel, sampler: str, schedule: str,
               embeds: tuple[torch.Tensor, torch.Tensor], seeds: list[int]) -> np.ndarray:
    pipe = active.model.pipeline
    model = _CompVisUNet(pipe.unet, dict(active.model.scheduler_config))
    denoiser = kd.external.CompVisDenoiser(model, quantize=False)
    cond, uncond = embeds

    def cfg_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([cond, uncond]))
        d_cond, d_uncond = out.chunk(2)
        return d_uncond + (d_cond - d_uncond) * CFG

    function, default, discard = K_SAMPLERS[sampler]
    chosen = default if schedule == "Automatic" else schedule.lower()
    n = STEPS + (1 if discard else 0)
    sigma_min, sigma_max = denoiser.sigmas[0].item(), denoiser.sigmas[-1].item()
    if chosen is None or chosen == "uniform":
        sigmas = denoiser.get_sigmas(n)
    elif chosen == "karras":
        sigmas = kd.sampling.get_sigmas_karras(n=n, sigma_min=sigma_min, sigma_max=sigma_max)
    else:
        sigmas = kd.sampling.get_sigmas_exponential(n=n, sigma_min=sigma_min, sigma_max=sigma_max)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])

    shape = (4, 8, 8)
    noise = _GeneratorNoise(seeds, shape)
    x = noise.initial * sigmas[0]
    kwargs: dict[str, Any] = {"disable": True}
    if sampler in ("DPM fast", "DPM adaptive"):
        kwargs.update(sigma_min=sigma_min, sigma_max=sigma_max, eta=1.0, noise_sampler=noise)
        if sampler == "DPM fast":
            kwargs["n"] = STEPS
    else:
        kwargs["sigmas"] = sigmas
    if sampler in BROWNIAN:
        low, high = sigmas[sigmas > 0].min(), sigmas.max()
        kwargs["noise_sampler"] = kd.sampling.BrownianTreeNoiseSampler(x, low, high, seed=seeds)
        kwargs["eta"] = 1.0
    elif "ancestral" in function:
        kwargs.update(eta=1.0, noise_sampler=noise)
    if sampler == "DPM++ 2M SDE Heun":
        kwargs["solver_type"] = "heun"
    with torch.no_grad():
        latents = getattr(kd.sampling, function)(cfg_denoiser, x, **kwargs)
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    images = pipe.image_processor.postprocess(images, output_type="pil")
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


def _embeddings(active: ActiveModel, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    from modules.generation.conditioning import ScheduledConditioning

    model = active.model
    sched = ScheduledConditioning.build(model.pipeline, model.family.id, [PROMPT] * batch, [NEGATIVE] * batch,
                                        steps=STEPS, clip_skip=1)
    kwargs = sched.initial_kwargs()
    return kwargs["prompt_embeds"], kwargs["negative_prompt_embeds"]


def _ours(active: ActiveModel, tmp_path: Path, sampler: str, schedule: str, batch: int) -> np.ndarray:
    req = Txt2ImgRequest(prompt=PROMPT, negative_prompt=NEGATIVE, steps=STEPS, width=64, height=64, seed=SEED,
                         sampler_name=sampler, scheduler=schedule, cfg_scale=CFG, batch_size=batch)
    result = run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    return np.stack([np.asarray(image, dtype=np.int16) for image in result.images])


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("sampler", list(K_SAMPLERS))
def test_a1111_sampler_matches_reference(kd, active, tmp_path, sampler: str, schedule: str) -> None:
    batch = 2 if schedule == "Automatic" else 1  # a batch checks the per-image noise streams
    seeds = [SEED + i for i in range(batch)]
    ours = _ours(active, tmp_path, sampler, schedule, batch)
    reference = _reference(kd, active, sampler, schedule, _embeddings(active, batch), seeds)
    difference = np.abs(ours - reference)
    print(f"{sampler} / {schedule}: max {difference.max()}, mean {difference.mean():.4f}")
    assert difference.max() <= 1, f"{sampler} / {schedule}: max {difference.max()}, mean {difference.mean():.3f}"
