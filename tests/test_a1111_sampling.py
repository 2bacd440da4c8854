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
from modules.generation.runners.txt2img import OutputOptions, run_txt2img
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
#: A1111's own samplers (not in k-diffusion): their arithmetic is written out below
OWN_SAMPLERS = ["Restart", "LCM", "DDIM", "DDIM CFG++", "PLMS", "UniPC"]
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


EMBEDDED = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"


def _load(path: Path, cache_dir: Path) -> ActiveModel:
    model = load_model(path, LoadOptions(cache_dir=cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(path, path.name, False), model=model, sha256="0" * 64, load_seconds=0)


@pytest.fixture(scope="module")
def active(tiny_checkpoints, model_cache_dir: Path) -> ActiveModel:
    return _load(tiny_checkpoints["sd1"]["single"], model_cache_dir)


def _latent_shape(active: ActiveModel) -> tuple[int, int, int]:
    side = 64 // active.model.vae_scale_factor
    return (active.model.latent_channels, side, side)


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
    """A1111's sampler noise: one draw per image from its own generator, after its initial noise
    (``rng="GPU"``: CUDA's Philox stream, A1111's default source, computed on the CPU)."""

    def __init__(self, seeds: list[int], shape: tuple[int, ...], rng: str = "CPU") -> None:
        from modules.generation.sampling.rng import PhiloxGenerator

        self.rng = rng
        self.generators = [torch.Generator().manual_seed(s) if rng == "CPU" else PhiloxGenerator(s) for s in seeds]
        self.shape = shape
        self.initial = self()

    def __call__(self, *_: Any) -> torch.Tensor:
        if self.rng == "CPU":
            return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])
        return torch.stack([g.randn(self.shape) for g in self.generators])


def _cfg(denoiser: Any, embeds: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """A1111's CFGDenoiser for one prompt per image: cond and uncond in one batch, combined after."""
    cond, uncond = embeds

    def combined(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        level = level.expand(x.shape[0]) if level.dim() == 1 and level.shape[0] == 1 else level
        out = denoiser(torch.cat([x, x]), torch.cat([level, level]), cond=torch.cat([cond, uncond]))
        d_cond, d_uncond = out.chunk(2)
        return d_uncond + (d_cond - d_uncond) * CFG

    return combined


def _decode(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    images = pipe.image_processor.postprocess(images, output_type="pil")
    return np.stack([np.asarray(image, dtype=np.int16) for image in images])


def _reference(kd: types.SimpleNamespace, active: ActiveModel, sampler: str, schedule: str,
               embeds: tuple[torch.Tensor, torch.Tensor], seeds: list[int], rng: str = "CPU") -> np.ndarray:
    pipe = active.model.pipeline
    model = _CompVisUNet(pipe.unet, dict(active.model.scheduler_config))
    shape = _latent_shape(active)
    if sampler in OWN_SAMPLERS:
        with torch.no_grad():
            return _decode(pipe, _own_reference(kd, model, sampler, schedule, embeds, seeds, shape))
    v_prediction = active.model.prediction_type == "v_prediction"
    denoiser = (kd.external.CompVisVDenoiser if v_prediction else kd.external.CompVisDenoiser)(model, quantize=False)
    cfg_denoiser = _cfg(denoiser, embeds)

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

    noise = _GeneratorNoise(seeds, shape, rng)
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
    return _decode(pipe, latents)


def _sigmas_for(kd: types.SimpleNamespace, denoiser: Any, schedule: str | None, n: int) -> torch.Tensor:
    sigma_min, sigma_max = denoiser.sigmas[0].item(), denoiser.sigmas[-1].item()
    if schedule in (None, "automatic", "uniform"):
        return denoiser.get_sigmas(n)
    if schedule == "karras":
        return kd.sampling.get_sigmas_karras(n=n, sigma_min=sigma_min, sigma_max=sigma_max)
    return kd.sampling.get_sigmas_exponential(n=n, sigma_min=sigma_min, sigma_max=sigma_max)


def _own_reference(kd: types.SimpleNamespace, model: _CompVisUNet, sampler: str, schedule: str,
                   embeds: tuple[torch.Tensor, torch.Tensor], seeds: list[int],
                   shape: tuple[int, int, int]) -> torch.Tensor:
    """A1111's Restart and LCM (sigma space) and DDIM, PLMS, UniPC (timesteps), written out."""
    noise = _GeneratorNoise(seeds, shape)
    chosen = schedule.lower()
    if sampler == "Restart":
        denoiser = kd.external.CompVisDenoiser(model, quantize=False)
        sigmas = _sigmas_for(kd, denoiser, "karras" if chosen == "automatic" else chosen, STEPS)
        return _restart_reference(kd, _cfg(denoiser, embeds), noise.initial * sigmas[0], sigmas, noise)
    if sampler == "LCM":
        denoiser = _lcm_denoiser(kd, model)
        sigmas = _sigmas_for(kd, denoiser, chosen, STEPS)
        x, cfg = noise.initial * sigmas[0], _cfg(denoiser, embeds)
        for i in range(len(sigmas) - 1):
            x = cfg(x, sigmas[i] * x.new_ones([x.shape[0]]))
            if sigmas[i + 1] > 0:
                x = x + sigmas[i + 1] * noise()
        return x
    assert chosen == "automatic", "A1111 runs its timestep samplers on their own timesteps"
    if sampler == "DDIM CFG++":
        return _ddim_cfgpp_reference(model, embeds, noise.initial)
    eps = _cfg(lambda x, t, cond: model.apply_model(x, t, cond), embeds)
    if sampler == "UniPC":
        return _unipc_reference(model, eps, noise.initial)
    return _ddim_plms_reference(model, eps, noise.initial, plms=sampler == "PLMS")


def _restart_reference(kd: types.SimpleNamespace, cfg: Any, x: torch.Tensor, sigmas: torch.Tensor,
                       noise: _GeneratorNoise) -> torch.Tensor:
    """A1111's restart sampler: Heun steps over a shortened Karras schedule with one restart."""
    steps = len(sigmas) - 1
    restarts: dict[float, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = kd.sampling.get_sigmas_karras(steps - restart_steps * restart_times, sigmas[-2].item(),
                                               sigmas[0].item())
        restarts = {0.1: (restart_steps + 1, restart_times, 2.0)}
    at = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restarts.items()}
    pairs = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in at:
            count, times, top = at[i + 1]
            high = int(torch.argmin(abs(sigmas - top), dim=0))
            if high < i + 1:
                again = kd.sampling.get_sigmas_karras(count, sigmas[i + 1].item(), sigmas[high].item())[:-1]
                for _ in range(times):
                    pairs.extend(zip(again[:-1], again[1:]))
    s_in = x.new_ones([x.shape[0]])
    last = None
    for old, new in pairs:
        if last is None:
            last = old
        elif last < old:
            x = x + noise() * 1.0 * (old ** 2 - last ** 2) ** 0.5
        d = kd.sampling.to_d(x, old, cfg(x, old * s_in))
        if new == 0:
            x = x + d * (new - old)
        else:
            x_2 = x + d * (new - old)
            d_2 = kd.sampling.to_d(x_2, new, cfg(x_2, new * s_in))
            x = x + (d + d_2) / 2 * (new - old)
        last = new
    return x


def _lcm_denoiser(kd: types.SimpleNamespace, model: _CompVisUNet) -> Any:
    """A1111's LCM discretisation over k-diffusion's DiscreteEpsDDPMDenoiser: 50 kept levels, quantised."""
    base = kd.external.DiscreteEpsDDPMDenoiser

    class LCMDenoiser(base):
        def __init__(self) -> None:
            kept = torch.zeros(50, dtype=torch.float32)
            for x in range(50):
                kept[49 - x] = model.alphas_cumprod[999 - x * 20]
            super().__init__(model, kept, quantize=None)

        def get_sigmas(self, n: int) -> torch.Tensor:
            t = torch.linspace(self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min), n)
            return kd.sampling.append_zero(self.t_to_sigma(t))

        def sigma_to_t(self, sigma: torch.Tensor, quantize: Any = None) -> torch.Tensor:
            return (sigma.log() - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape) * 20 + 19

        def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
            return super().t_to_sigma(torch.clamp(((t - 19) / 20).float(), min=0, max=49))

        def get_eps(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            return self.inner_model.apply_model(*args, **kwargs)

        def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            c_out, c_in = [kd.sampling.utils.append_dims(v, x.ndim) for v in self.get_scalings(sigma)]
            denoised = x + self.get_eps(x * c_in, self.sigma_to_t(sigma), **kwargs) * c_out
            scaled = kd.sampling.utils.append_dims(self.sigma_to_t(sigma), x.ndim) * 10.0
            return scaled / (scaled ** 2 + 0.25) ** 0.5 * denoised + 0.25 / (scaled ** 2 + 0.25) * x

    return LCMDenoiser()


def _a1111_timesteps() -> torch.Tensor:
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // STEPS))) + 1, 0, 999)


def _ddim_plms_reference(model: _CompVisUNet, eps: Any, x: torch.Tensor, plms: bool) -> torch.Tensor:
    """A1111's DDIM (eta 0) and PLMS over its ``range(0, 1000, 1000 // steps) + 1`` timesteps."""
    timesteps = _a1111_timesteps()
    ac = model.alphas_cumprod
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    root = torch.sqrt(1 - alphas)
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    s_in = x.new_ones([x.shape[0]])
    history: list[torch.Tensor] = []

    def advance(x: torch.Tensor, e: torch.Tensor, index: int) -> torch.Tensor:
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        pred_x0 = (x - root[index].item() * s_x * e) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = eps(x, timesteps[index].item() * s_in)
        if not plms:
            x = advance(x, e_t, index)
            continue
        if not history:
            e_next = eps(advance(x, e_t, index), timesteps[max(index - 1, 0)].item() * s_in)
            e_prime = (e_t + e_next) / 2
        elif len(history) == 1:
            e_prime = (3 * e_t - history[-1]) / 2
        elif len(history) == 2:
            e_prime = (23 * e_t - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = advance(x, e_prime, index)
        history = (history + [e_t])[-3:]
    return x


def _ddim_cfgpp_reference(model: _CompVisUNet, embeds: tuple[torch.Tensor, torch.Tensor],
                          x: torch.Tensor) -> torch.Tensor:
    """A1111's DDIM CFG++: CFG scale / 12.5 for the clean estimate, the unconditional noise for the
    direction back to x_t (eta 0)."""
    cond, uncond = embeds
    timesteps = _a1111_timesteps()
    ac = model.alphas_cumprod
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    root = torch.sqrt(1 - alphas)
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        t = timesteps[index].item() * s_in
        e_cond, e_uncond = model.apply_model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond])).chunk(2)
        e_t = e_uncond + (e_cond - e_uncond) * (1.0 * (CFG * (1 / 12.5)))
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        pred_x0 = (x - root[index].item() * s_x * e_t) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_uncond
    return x


def _unipc_reference(model: _CompVisUNet, eps: Any, x: torch.Tensor) -> torch.Tensor:
    """A1111's UniPC (bh1, order 3, lower order final, x0 prediction, time-uniform from t=1 to 1/N),
    its update arithmetic taken from diffusers' UniPCMultistepScheduler on A1111's noise levels and
    model times (log alpha interpolated linearly in continuous time, model time ``(t - 1/N) * N``)."""
    from diffusers import UniPCMultistepScheduler

    count = len(_a1111_timesteps())
    times = torch.linspace(1.0, 1.0 / 1000, count + 1)
    grid = np.linspace(0.0, 1.0, 1001)[1:]
    log_alpha = np.interp(times.double().numpy(), grid, 0.5 * np.log(model.alphas_cumprod.double().numpy()))
    alpha = np.exp(log_alpha)
    sigmas = np.sqrt(1.0 - alpha ** 2) / alpha
    scheduler = UniPCMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        solver_type="bh1", solver_order=3, lower_order_final=True,
                                        predict_x0=True, final_sigmas_type="sigma_min")
    scheduler.set_timesteps(count)
    scheduler.sigmas = torch.tensor(sigmas, dtype=torch.float32)
    s_in = x.new_ones([x.shape[0]])
    for k in range(count):
        e = eps(x, (times[k] - 1.0 / 1000) * 1000.0 * s_in)
        x = scheduler.step(e, scheduler.timesteps[k], x).prev_sample
    return x


def _embeddings(active: ActiveModel, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    from modules.generation.prompts.conditioning import ScheduledConditioning

    model = active.model
    sched = ScheduledConditioning.build(model.pipeline, model.family.id, [PROMPT] * batch, [NEGATIVE] * batch,
                                        steps=STEPS, clip_skip=1)
    kwargs = sched.initial_kwargs()
    return kwargs["prompt_embeds"], kwargs["negative_prompt_embeds"]


def _ours(active: ActiveModel, tmp_path: Path, sampler: str, schedule: str, batch: int, rng: str = "CPU") -> np.ndarray:
    req = Txt2ImgRequest(prompt=PROMPT, negative_prompt=NEGATIVE, steps=STEPS, width=64, height=64, seed=SEED,
                         sampler_name=sampler, scheduler=schedule, cfg_scale=CFG, batch_size=batch, randn_source=rng)
    result = run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    return np.stack([np.asarray(image, dtype=np.int16) for image in result.images])


def _cases() -> list[tuple[str, str]]:
    """Every sampler on its Automatic schedule (batch 2), and on one of the other schedules in turn, so that each
    schedule is checked with about a third of the samplers, first- and second-order, ancestral and SDE alike (the
    tiny sampler matrix runs every pair; this compares pictures against k-diffusion, 20 steps each)."""
    samplers = [*K_SAMPLERS, "Restart", "LCM"]
    others = [schedule for schedule in SCHEDULES if schedule != "Automatic"]
    cases = [pair for i, sampler in enumerate(samplers)
             for pair in ((sampler, "Automatic"), (sampler, others[i % len(others)]))]
    return cases + [(sampler, "Automatic") for sampler in ("DDIM", "DDIM CFG++", "PLMS", "UniPC")]


def _compare(kd: types.SimpleNamespace, active: ActiveModel, tmp_path: Path, sampler: str, schedule: str,
             batch: int, rng: str = "CPU") -> None:
    seeds = [SEED + i for i in range(batch)]
    ours = _ours(active, tmp_path, sampler, schedule, batch, rng)
    reference = _reference(kd, active, sampler, schedule, _embeddings(active, batch), seeds, rng)
    difference = np.abs(ours - reference)
    print(f"{active.model.family.id} {sampler} / {schedule}: max {difference.max()}, mean {difference.mean():.4f}")
    assert difference.max() <= 1, f"{sampler} / {schedule}: max {difference.max()}, mean {difference.mean():.3f}"


@pytest.mark.parametrize(("sampler", "schedule"), _cases())
def test_a1111_sampler_matches_reference(kd, active, tmp_path, sampler: str, schedule: str) -> None:
    _compare(kd, active, tmp_path, sampler, schedule, batch=2 if schedule == "Automatic" else 1)


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "DPM++ 2M", "DPM2 a", "DPM fast"])
def test_gpu_rng_matches_reference(kd, active, tmp_path, sampler: str) -> None:
    """A1111's default RNG (GPU): the initial noise and the ancestral noise from CUDA's Philox stream."""
    _compare(kd, active, tmp_path, sampler, "Automatic", batch=2, rng="GPU")


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "Heun", "DPM++ SDE", "DPM fast", "LMS"])
def test_v_prediction_matches_reference(kd, tiny_checkpoints, model_cache_dir, tmp_path, sampler: str) -> None:
    active_v = _load(tiny_checkpoints["sd2-768-v"]["single"], model_cache_dir)
    assert active_v.model.prediction_type == "v_prediction"
    _compare(kd, active_v, tmp_path, sampler, "Automatic", batch=1)


@pytest.fixture(scope="module")
def embedded(model_cache_dir: Path) -> ActiveModel:
    if not EMBEDDED.is_file():
        pytest.skip(f"the embedded default {EMBEDDED.name} is not present")
    return _load(EMBEDDED, model_cache_dir)


#: the embedded default's check covers each family of arithmetic (every sampler is checked on tiny SD 1.x above)
EMBEDDED_SAMPLERS = ["Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE",
                     "DPM fast", "Restart", "DDIM", "UniPC", "LCM"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", EMBEDDED_SAMPLERS)
def test_embedded_default_matches_reference(kd, embedded, tmp_path, sampler: str) -> None:
    assert sampler in [*K_SAMPLERS, *OWN_SAMPLERS]
    """The trained embedded default: a real model's denoiser, where differences would show."""
    _compare(kd, embedded, tmp_path, sampler, "Automatic", batch=2)


class _SmoothModel(torch.nn.Module):
    """A stand-in epsilon model (smooth in x and t) for scheduler-level comparisons."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        n = int(config.get("num_train_timesteps", 1000))
        betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, n, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas.numpy()), dtype=torch.float32)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        return 0.3 * torch.tanh(x) * (1 + t.float().reshape(-1, 1, 1, 1) / 1000)


@pytest.mark.parametrize("rng", ["CPU", "GPU"])
@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M", "Heun", "DPM++ SDE"])
def test_img2img_start_follows_a1111(kd, sampler: str, rng: str) -> None:
    """Driven the way diffusers' img2img pipelines drive it (slice at ``k = steps - int(steps * strength)``,
    ``set_begin_index``, ``add_noise``) with the strength the runners give the pipeline
    (:func:`~modules.generation.sampling.passes.pipeline_strength`), the scheduler runs A1111's
    ``sample_img2img``: the k-diffusion sampler on ``sigmas[steps - t_enc - 1:]`` from ``init + noise *
    sigmas[steps - t_enc - 1]``, the noise being each image's first seed draw and the sampler's noise
    continuing the stream."""
    from types import SimpleNamespace

    from modules.generation.sampling.passes import pipeline_strength
    from modules.generation.sampling.samplers import resolve_sampler

    config = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    steps, strength, seeds = 20, 0.6, [5, 6]
    model = _SmoothModel(config)
    init = torch.linspace(-1, 1, 2 * 4 * 8 * 8).reshape(2, 4, 8, 8)

    scheduler = resolve_sampler(sampler).build(config, "epsilon", seeds=seeds, rng=rng)
    scheduler.set_timesteps(steps)
    sd_model = SimpleNamespace(family=SimpleNamespace(architecture="sd"))
    t_start = steps - min(int(steps * pipeline_strength(sd_model, steps, strength)), steps)  # get_timesteps
    t_enc = int(min(strength, 0.999) * steps)  # A1111's
    assert t_start == steps - t_enc - 1
    timesteps = scheduler.timesteps[t_start:]
    scheduler.set_begin_index(t_start)
    noise = _GeneratorNoise(seeds, (4, 8, 8))  # the pipeline draws CPU noise whatever the source
    x = scheduler.add_noise(init, noise.initial, timesteps[:1])
    for t in timesteps:
        eps = model.apply_model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x).prev_sample
        if scheduler.finished:
            break

    function, default, discard = K_SAMPLERS[sampler]
    denoiser = kd.external.CompVisDenoiser(model, quantize=False)
    sigmas = _sigmas_for(kd, denoiser, default, steps + (1 if discard else 0))
    schedule = sigmas[steps - t_enc - 1:]
    reference_noise = _GeneratorNoise(seeds, (4, 8, 8), rng)
    xi = init + reference_noise.initial * schedule[0]
    kwargs: dict[str, Any] = {"sigmas": schedule, "disable": True}
    if sampler in BROWNIAN:
        kwargs["noise_sampler"] = kd.sampling.BrownianTreeNoiseSampler(xi, sigmas[sigmas > 0].min(), sigmas.max(),
                                                                       seed=seeds)
    elif "ancestral" in function:
        kwargs["noise_sampler"] = reference_noise
    reference = getattr(kd.sampling, function)(lambda v, s: denoiser(v, s, cond=None), xi, **kwargs)
    assert torch.allclose(x, reference, atol=1e-4), float((x - reference).abs().max())
