"""Tests for the sampler and schedule registry."""

from __future__ import annotations

import inspect

import numpy as np
import torch
import pytest
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
)
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

from modules.generation.sampling.a1111_scheduler import A1111Scheduler

from modules.generation.sampling.samplers import (
    SamplerNotSupportedError,
    UnknownSamplerError,
    UnknownScheduleError,
    UnsupportedScheduleError,
    default_sampler_name,
    list_samplers,
    list_schedules,
    resolve_sampler,
)

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
SD15_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# black-forest-labs/FLUX.1-dev scheduler/scheduler_config.json
FLUX_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.30.0.dev0",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}

DIFFUSION_SAMPLERS = [s["name"] for s in list_samplers("epsilon")]
FLOW_SAMPLERS = [s["name"] for s in list_samplers("flow")]


def _flux_mu() -> float:
    return calculate_shift(4096, 256, 4096, 0.5, 1.15)


@pytest.mark.parametrize("name", DIFFUSION_SAMPLERS)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_every_sd_sampler_builds_and_sets_timesteps(name: str, prediction_type: str) -> None:
    resolved = resolve_sampler(name)
    scheduler = resolved.build(SD15_CONFIG, prediction_type)
    assert isinstance(scheduler, resolved.scheduler_class(prediction_type))
    assert scheduler.config.prediction_type == prediction_type
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_start == pytest.approx(0.00085)
    scheduler.set_timesteps(20)
    # one timestep per model call; A1111's DDIM makes steps - 1 calls (it stops at t = 1)
    assert len(scheduler.timesteps) >= (19 if name.startswith("DDIM") else 20)
    assert float(scheduler.timesteps[0]) > float(scheduler.timesteps[-1])


@pytest.mark.parametrize("name", FLOW_SAMPLERS)
def test_every_flow_sampler_builds_from_flux_config(name: str) -> None:
    resolved = resolve_sampler(name)
    scheduler = resolved.build(FLUX_CONFIG, "flow")
    if "mu" in resolved.set_timesteps_params("flow"):
        scheduler.set_timesteps(20, mu=_flux_mu())
    else:
        scheduler.set_timesteps(20)
    assert len(scheduler.timesteps) >= 20
    sigmas = scheduler.sigmas.float()
    assert 0.9 < float(sigmas[0]) <= 1.0
    assert float(sigmas[-1]) == pytest.approx(0.0, abs=1e-6)


def test_flow_samplers_that_take_sigmas_and_mu_work_like_flux_pipeline() -> None:
    """FluxPipeline passes sigmas (unless use_flow_sigmas) and mu to set_timesteps."""
    compatible = []
    for name in FLOW_SAMPLERS:
        resolved = resolve_sampler(name)
        scheduler = resolved.build(FLUX_CONFIG, "flow")
        sigmas = None if scheduler.config.get("use_flow_sigmas") else np.linspace(1.0, 1 / 20, 20)
        params = resolved.set_timesteps_params("flow")
        if "mu" not in params or (sigmas is not None and "sigmas" not in params):
            continue
        timesteps, steps = retrieve_timesteps(scheduler, 20, "cpu", sigmas=sigmas, mu=_flux_mu())
        assert steps == 20
        compatible.append(name)
    assert {"Euler", "DPM++ 2M", "UniPC"} <= set(compatible)
    assert "Heun" not in compatible  # FlowMatchHeun.set_timesteps takes neither sigmas nor mu


def test_flow_dpm_uses_flow_sigmas_and_model_shift() -> None:
    scheduler = resolve_sampler("DPM++ 2M").build(FLUX_CONFIG, "flow")
    assert isinstance(scheduler, DPMSolverMultistepScheduler)
    assert scheduler.config.use_flow_sigmas is True
    assert scheduler.config.prediction_type == "flow_prediction"
    assert scheduler.config.flow_shift == pytest.approx(3.0)
    assert scheduler.config.use_karras_sigmas is False


def test_flow_mapping_classes() -> None:
    assert isinstance(resolve_sampler("Euler").build(FLUX_CONFIG, "flow"), FlowMatchEulerDiscreteScheduler)
    assert isinstance(resolve_sampler("Heun").build(FLUX_CONFIG, "flow"), FlowMatchHeunDiscreteScheduler)
    built = resolve_sampler("Euler").build(FLUX_CONFIG, "flow")
    assert built.config.shift == pytest.approx(3.0)
    assert built.config.use_dynamic_shifting is True


def test_flow_euler_karras_is_honoured() -> None:
    scheduler = resolve_sampler("Euler", "Karras").build(FLUX_CONFIG, "flow")
    assert scheduler.config.use_karras_sigmas is True
    scheduler.set_timesteps(10, mu=_flux_mu())
    assert len(scheduler.timesteps) == 10


def test_unsupported_prediction_type_raises() -> None:
    with pytest.raises(SamplerNotSupportedError, match="DDIM"):
        resolve_sampler("DDIM").build(FLUX_CONFIG, "flow")
    with pytest.raises(SamplerNotSupportedError, match="Euler a"):
        resolve_sampler("Euler a").build(FLUX_CONFIG, "flow")
    with pytest.raises(SamplerNotSupportedError, match="prediction type"):
        resolve_sampler("Euler").build(SD15_CONFIG, "sample")
    assert "DDIM" not in FLOW_SAMPLERS and "Euler a" not in FLOW_SAMPLERS
    assert resolve_sampler("DDIM").supported_prediction_types == ("epsilon", "v_prediction")


def test_default_schedule_applied_and_labelled() -> None:
    resolved = resolve_sampler("DPM++ 2M")
    assert resolved.sampler_name == "DPM++ 2M"
    assert resolved.schedule == "automatic"
    assert resolved.schedule_label == "Karras"
    scheduler = resolved.build(SD15_CONFIG, "epsilon")
    assert isinstance(scheduler, A1111Scheduler)
    assert (scheduler.config.sampler, scheduler.config.schedule) == ("dpmpp_2m", "karras")
    sde = resolve_sampler("DPM++ 2M SDE")
    assert sde.schedule_label == "Exponential"
    assert sde.build(SD15_CONFIG, "epsilon").config.schedule == "exponential"
    assert resolve_sampler("DPM++ 2M").schedule_label_for("flow") == "Automatic"


def test_automatic_without_default_keeps_model_config() -> None:
    resolved = resolve_sampler("Euler a", "automatic")
    assert resolved.schedule_label == "Automatic"
    # a diffusers-only sampler keeps the model's own spacing
    scheduler = resolve_sampler("DEIS").build(dict(SD15_CONFIG, timestep_spacing="trailing"), "epsilon")
    assert scheduler.config.timestep_spacing == "trailing"


def test_explicit_schedule_overrides_and_resets_other_flags() -> None:
    config = dict(SD15_CONFIG, use_karras_sigmas=True)
    scheduler = resolve_sampler("DEIS", "Exponential").build(config, "epsilon")
    assert scheduler.config.use_exponential_sigmas is True
    assert scheduler.config.use_karras_sigmas is False
    uniform = resolve_sampler("DEIS", "sgm_uniform").build(config, "epsilon")
    assert uniform.config.timestep_spacing == "trailing"
    assert uniform.config.use_karras_sigmas is False
    assert resolve_sampler("DPM++ 2M", "Exponential").build(config, "epsilon").config.schedule == "exponential"
    assert resolve_sampler("DDIM", "ddim").build(SD15_CONFIG, "epsilon").config.schedule == "ddim"


@pytest.mark.parametrize(
    ("legacy", "sampler", "schedule", "label"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M", "karras", "Karras"),
        ("DPM++ SDE Karras", "DPM++ SDE", "karras", "Karras"),
        ("DPM++ 2M SDE Karras", "DPM++ 2M SDE", "karras", "Karras"),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "exponential", "Exponential"),
        ("DPM++ 2M SDE Heun Karras", "DPM++ 2M SDE Heun", "karras", "Karras"),
        ("dpm++ 2m karras", "DPM++ 2M", "karras", "Karras"),
        ("Euler SGMUniform", "Euler", "sgm_uniform", "SGM Uniform"),
        ("Euler sgm_uniform", "Euler", "sgm_uniform", "SGM Uniform"),
        ("LMS Karras", "LMS", "karras", "Karras"),
    ],
)
def test_legacy_combined_names_split(legacy: str, sampler: str, schedule: str, label: str) -> None:
    resolved = resolve_sampler(legacy, "automatic")
    assert (resolved.sampler_name, resolved.schedule, resolved.schedule_label) == (sampler, schedule, label)


def test_legacy_suffix_wins_over_scheduler_argument() -> None:
    resolved = resolve_sampler("DPM++ 2M Karras", "exponential")
    assert resolved.schedule == "karras"


def test_every_schedule_applies_to_a1111_samplers_and_flow_still_refuses() -> None:
    assert resolve_sampler("Euler a Karras").schedule_label == "Karras"
    assert resolve_sampler("DDIM", "Karras").schedule_label == "Karras"
    assert resolve_sampler("DPM fast", "Karras").schedule_label == "Automatic"  # picks its own levels
    # a diffusers-only sampler runs a schedule it cannot apply as the model's own, and says so
    assert resolve_sampler("DEIS", "Align Your Steps").schedule_label == "Automatic"
    assert resolve_sampler("UniPC", "Align Your Steps").schedule_label == "Align Your Steps"
    with pytest.raises(UnsupportedScheduleError):
        resolve_sampler("DPM++ 2M", "karras").build(FLUX_CONFIG, "flow")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("k_euler_a", "Euler a"),
        ("K_EULER_ANCESTRAL", "Euler a"),
        ("euler a", "Euler a"),
        ("k_dpmpp_2m", "DPM++ 2M"),
        ("k_dpmpp_2m_sde_heun", "DPM++ 2M SDE Heun"),
        ("plms", "PLMS"),
        ("  Euler  ", "Euler"),
        ("k_lcm", "LCM"),
    ],
)
def test_aliases_and_case(name: str, canonical: str) -> None:
    assert resolve_sampler(name).sampler_name == canonical


@pytest.mark.parametrize("scheduler", [None, "", "automatic", "Automatic", "AUTOMATIC"])
def test_automatic_spellings(scheduler: str | None) -> None:
    assert resolve_sampler("Euler", scheduler).schedule == "automatic"


def test_scheduler_by_name_or_label() -> None:
    assert resolve_sampler("Euler", "karras").schedule == "karras"
    assert resolve_sampler("Euler", "Karras").schedule == "karras"
    assert resolve_sampler("Euler", "SGM Uniform").schedule == "sgm_uniform"


def test_unknown_sampler_raises_with_suggestions() -> None:
    with pytest.raises(UnknownSamplerError) as info:
        resolve_sampler("Totally Fake Sampler")
    assert "DPM++ 2M" in str(info.value) and "Totally Fake Sampler" in str(info.value)
    with pytest.raises(UnknownSamplerError):
        resolve_sampler("Fake Karras")
    with pytest.raises(UnknownSamplerError):
        resolve_sampler("")
    assert resolve_sampler("k_dpm_ad").sampler_name == "DPM adaptive"


def test_unknown_and_unmappable_schedules_raise() -> None:
    with pytest.raises(UnknownScheduleError, match="nonsense"):
        resolve_sampler("Euler", "nonsense")
    assert resolve_sampler("Euler", "polyexponential").schedule_label == "Polyexponential"
    assert resolve_sampler("DPM++ 2M Align Your Steps").schedule_label == "Align Your Steps"


def test_list_samplers_api_shape_and_order() -> None:
    samplers = list_samplers()
    assert samplers[0] == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m"], "options": {"scheduler": "karras"}}
    names = [s["name"] for s in samplers]
    for required in ("Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ SDE", "DPM++ 2M SDE",
                     "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "DDIM", "PLMS", "UniPC", "LCM", "DEIS"):
        assert required in names
    assert {"DPM fast", "DPM adaptive", "Restart", "DDIM CFG++"} <= set(names)
    for sampler in samplers:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in sampler["options"].items())
    dpm_sde = next(s for s in samplers if s["name"] == "DPM++ SDE")
    assert dpm_sde["options"] == {"scheduler": "karras", "second_order": "True", "brownian_noise": "True"}
    assert set(FLOW_SAMPLERS) >= {"Euler", "Heun", "DPM++ 2M", "UniPC"}
    assert default_sampler_name("epsilon") == "DPM++ 2M"
    assert default_sampler_name("flow") == "Euler"


def test_list_schedules_api_shape() -> None:
    schedules = list_schedules()
    karras = next(s for s in schedules if s["name"] == "karras")
    assert karras == {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
                      "need_inner_model": False}
    sgm = next(s for s in schedules if s["name"] == "sgm_uniform")
    assert sgm["aliases"] == ["SGMUniform"] and sgm["need_inner_model"] is True
    names = [s["name"] for s in schedules]
    assert names[0] == "automatic"
    assert {"uniform", "exponential", "beta", "normal", "simple", "ddim"} <= set(names)
    assert {"polyexponential", "kl_optimal", "align_your_steps"} <= set(names)


def test_plms_runs_a1111_plms_and_zero_snr_models_use_diffusers() -> None:
    scheduler = resolve_sampler("PLMS").build(SD15_CONFIG, "epsilon")
    assert isinstance(scheduler, A1111Scheduler) and scheduler.config.sampler == "plms"
    zero_snr = dict(SD15_CONFIG, rescale_betas_zero_snr=True)
    assert isinstance(resolve_sampler("Euler a").build(zero_snr, "v_prediction"), EulerAncestralDiscreteScheduler)
    with pytest.raises(SamplerNotSupportedError, match="zero-terminal-SNR"):
        resolve_sampler("Restart").build(zero_snr, "v_prediction")


def _run_loop(scheduler, steps: int, **timestep_kwargs) -> torch.Tensor:
    """A denoising loop shaped like diffusers pipelines (generator only where step takes it)."""
    generator = torch.Generator().manual_seed(0)
    scheduler.set_timesteps(steps, **timestep_kwargs)
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    sample = torch.randn((1, 4, 8, 8), generator=generator) * getattr(scheduler, "init_noise_sigma", 1.0)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t) if hasattr(scheduler, "scale_model_input") else sample
        model_output = 0.1 * model_input  # a stand-in "model": any smooth function of the input
        sample = scheduler.step(model_output, t, sample, **step_kwargs).prev_sample
    return sample


@pytest.mark.parametrize("name", DIFFUSION_SAMPLERS)
def test_every_sd_sampler_runs_a_denoising_loop(name: str) -> None:
    scheduler = resolve_sampler(name).build(SD15_CONFIG, "epsilon")
    result = _run_loop(scheduler, 8)
    assert result.shape == (1, 4, 8, 8)
    assert torch.isfinite(result).all()


@pytest.mark.parametrize("name", FLOW_SAMPLERS)
def test_every_flow_sampler_runs_a_denoising_loop(name: str) -> None:
    resolved = resolve_sampler(name)
    scheduler = resolved.build(FLUX_CONFIG, "flow")
    kwargs = {"mu": _flux_mu()} if "mu" in resolved.set_timesteps_params("flow") else {}
    result = _run_loop(scheduler, 8, **kwargs)
    assert torch.isfinite(result).all()


@pytest.mark.parametrize("schedule", [s["name"] for s in list_schedules()])
@pytest.mark.parametrize("name", ["Euler", "DPM++ 2M"])
def test_every_schedule_runs_with_euler_and_dpmpp_2m(name: str, schedule: str) -> None:
    resolved = resolve_sampler(name, schedule)
    scheduler = resolved.build(SD15_CONFIG, "epsilon")
    result = _run_loop(scheduler, 6)
    assert torch.isfinite(result).all()
    assert resolved.schedule == schedule
