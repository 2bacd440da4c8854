"""Feeding ControlNet residuals into a UNet for one pipeline call, the way sd-webui-controlnet does.

A forward pre-hook on the UNet (``register_forward_pre_hook(with_kwargs=True)``, removed on exit) runs
each active ControlNet on the UNet's own input (the first latent channels: a 9-channel inpainting UNet's
ControlNet sees the 4 noisy-latent channels, as diffusers' inpaint ControlNet pipeline does) and passes
the summed results as ``down_block_additional_residuals`` / ``mid_block_additional_residual``. So every
pipeline the runner calls -- txt2img, img2img and inpaint with its latent inputs, the hires pass -- gets
ControlNet without swapping to another pipeline class or changing its arguments.

Per unit, the A1111 extension's semantics:

* guidance start/end: active for step ``i`` of ``n`` unless ``i/n < start`` or ``i/n > end`` (the
  extension's ``guidance_schedule_handler``; diffusers' ``controlnet_keep`` differs only in stopping one
  step earlier at ``end``); the step is found from the timestep in the scheduler's schedule, so
  second-order samplers and img2img strength are counted like the pipeline counts them;
* "Balanced": residuals x weight;
* "My prompt is more important": soft injection, residual ``k`` of ``K`` x weight x ``0.825 ** (12 - k)``
  (the extension's list, cut to SDXL's 10 outputs as it does);
* "ControlNet is more important": soft injection and CFG injection -- the residuals are applied to the
  conditional half of the classifier-free-guidance batch only (what diffusers' ``guess_mode`` does with
  logspace(-1, 0) weights, 0.1 ... 1.0, close to 0.825 ** 12 ... 1);
* in the hires pass, canny and mlsd units always get soft injection (the extension's
  ``high_res_fix_forced_soft_injection``, it reduces artifacts).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

SOFT_BASE = 0.825


def soft_scales(count: int) -> list[float]:
    """sd-webui-controlnet's soft-injection factors for ``count`` residuals (13 for SD, 10 for SDXL)."""
    full = [SOFT_BASE ** float(12 - i) for i in range(13)]
    return full[:count] if count <= 13 else [SOFT_BASE ** float(count - 1 - i) for i in range(count)]


@dataclass
class ActiveControl:
    """One unit ready to run: its network, numbers and a control image source per pixel size."""

    net: Any
    weight: float
    guidance_start: float
    guidance_end: float
    soft: bool
    cfg_injection: bool
    image_for: Callable[[int, int], torch.Tensor]   # (width, height) -> (1, 3, H, W) in [0, 1]

    def keeps(self, step: int, total: int) -> bool:
        """sd-webui-controlnet: stopped while ``step / total`` is below start or above end."""
        fraction = step / max(total, 1)
        return not (fraction < self.guidance_start or fraction > self.guidance_end)

    def scales(self, count: int) -> list[float]:
        return [self.weight * s for s in soft_scales(count)] if self.soft else [self.weight] * count


class StepClock:
    """Which step of the pass a UNet call belongs to, from its timestep and the scheduler's schedule."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.schedule: list[float] | None = None
        self.start = 0
        self.cursor = -1
        self.calls = 0

    def position(self, timestep: Any) -> tuple[int, int]:
        t = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else float(timestep)
        self.calls += 1
        if self.schedule is None:
            raw = getattr(self.scheduler, "timesteps", None)
            self.schedule = [float(v) for v in raw] if raw is not None else []
            first = self._find(t, 0)
            self.start = first if first is not None else 0
            self.cursor = self.start if first is not None else -1
        else:
            found = self._find(t, self.cursor + 1)
            if found is not None:
                self.cursor = found
            elif not (0 <= self.cursor < len(self.schedule) and abs(self.schedule[self.cursor] - t) < 1e-3):
                self.cursor += 1
        total = len(self.schedule) - self.start if self.schedule else self.calls
        step = self.cursor - self.start if self.cursor >= 0 else self.calls - 1
        return max(step, 0), max(total, 1)

    def _find(self, t: float, begin: int) -> int | None:
        assert self.schedule is not None
        for index in range(max(begin, 0), len(self.schedule)):
            if abs(self.schedule[index] - t) < 1e-3:
                return index
        return None


class ControlInjector:
    """The UNet forward pre-hook adding the residuals of ``controls`` (see the module docstring)."""

    def __init__(self, controls: Sequence[ActiveControl], scheduler: Any, images_per_call: int,
                 vae_scale_factor: int) -> None:
        self.controls = list(controls)
        self.clock = StepClock(scheduler)
        self.images_per_call = images_per_call
        self.factor = vae_scale_factor

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        context = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")
        step, total = self.clock.position(timestep)
        batch = sample.shape[0]
        cfg_batch = self.images_per_call > 0 and batch == 2 * self.images_per_call
        downs: list[torch.Tensor] | None = None
        mid: torch.Tensor | None = None
        for control in self.controls:
            if not control.keeps(step, total):
                continue
            net = control.net
            height, width = sample.shape[-2] * self.factor, sample.shape[-1] * self.factor
            cond = control.image_for(width, height).to(device=sample.device, dtype=net.dtype)
            cond = cond.expand(batch, -1, -1, -1)
            down, middle = net(sample[:, : net.config.in_channels].to(net.dtype), timestep,
                               encoder_hidden_states=context.to(net.dtype), controlnet_cond=cond,
                               conditioning_scale=1.0, added_cond_kwargs=kwargs.get("added_cond_kwargs"),
                               return_dict=False)
            scales = control.scales(len(down) + 1)
            down = [residual * scale for residual, scale in zip(down, scales)]
            middle = middle * scales[-1]
            if control.cfg_injection and cfg_batch:
                keep = torch.ones(batch, 1, 1, 1, device=sample.device, dtype=middle.dtype)
                keep[: batch // 2] = 0
                down = [residual * keep for residual in down]
                middle = middle * keep
            downs = down if downs is None else [a + b for a, b in zip(downs, down)]
            mid = middle if mid is None else mid + middle
        if downs is None or mid is None:
            return None
        kwargs = dict(kwargs)
        downs = [d.to(sample.dtype) for d in downs]
        mid = mid.to(sample.dtype)
        if kwargs.get("down_block_additional_residuals") is not None:
            downs = [d + e for d, e in zip(downs, kwargs["down_block_additional_residuals"])]
        if kwargs.get("mid_block_additional_residual") is not None:
            mid = mid + kwargs["mid_block_additional_residual"]
        kwargs["down_block_additional_residuals"] = downs
        kwargs["mid_block_additional_residual"] = mid
        return args, kwargs


@contextlib.contextmanager
def injected(unet: torch.nn.Module, injector: ControlInjector) -> Iterator[None]:
    """``injector`` runs before every forward of ``unet`` inside the block."""
    handle = unet.register_forward_pre_hook(injector, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
