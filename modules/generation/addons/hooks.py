"""The hook through which LoRA, textual inversion, VAE selection, ControlNet and the like join a run.

A runner (:func:`modules.generation.runners.txt2img.run_txt2img`, :func:`modules.generation.runners.img2img.run_img2img`)
takes ``hooks: Sequence[SamplingHook]``. Around **every pipeline call** (each batch, and each pass of a
batch: first pass, hires second pass, refiner) it builds a :class:`SamplingContext` and enters every
hook, in order, with :class:`contextlib.ExitStack`::

    with ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook(ctx))
        # prompts are encoded now, with ctx.pipe's (possibly patched) text encoders
        images = ctx.pipe(**prompt_kwargs, **ctx.call_kwargs, callback_on_step_end=...)
    # every hook has exited here, in reverse order, even after an error

A hook is any callable ``hook(ctx) -> ContextManager[None]`` (typically a ``@contextmanager``
generator function, or a small class whose ``__call__`` returns one). While entered it may:

* swap ``ctx.pipe`` (e.g. ``StableDiffusionControlNetPipeline.from_pipe(ctx.pipe, controlnet=...,
  torch_dtype=ctx.pipe.dtype)``; the scheduler is already set on ``ctx.pipe`` and is shared);
* load weights into the modules of ``ctx.pipe`` (LoRA, embeddings, a VAE) -- it must restore them on exit;
* add or replace entries of ``ctx.call_kwargs`` (e.g. ``image=`` control images,
  ``controlnet_conditioning_scale=``, ``cross_attention_kwargs=``); the runner's own entries are the
  pipeline arguments listed in :class:`SamplingContext`;
* rewrite ``ctx.prompts`` / ``ctx.negatives`` (they are encoded after all hooks are entered);
* append to ``ctx.step_callbacks`` a ``fn(step, total, timestep, latents)`` called after every step;
* add A1111 infotext entries to ``ctx.infotext_params`` (e.g. ``{"Lora hashes": "name: 0123abcd"}``);
  they are written after the runner's own keys, for every image of that batch.

Extra-network tags (``<lora:name:0.8>``) are removed from the prompt before encoding and passed in
``ctx.extra_networks``. A tag whose kind no hook declares is refused with a clear message; a hook
declares the kinds it handles with an ``extra_network_kinds`` attribute (``("lora", "lyco")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

if TYPE_CHECKING:
    from modules.generation.prompts.parser import ExtraNetworkCall
    from modules.generation.requests import GenerationRequest
    from modules.models.loader import LoadedModel

#: what ``SamplingContext.task`` can be
TASKS = ("txt2img", "img2img", "inpaint", "hires", "refiner")


@dataclass
class SamplingContext:
    """One pipeline call about to happen (mutable by hooks; see module docstring).

    ``call_kwargs`` holds the runner's pipeline arguments except the prompt embeddings and the
    step callback: ``num_inference_steps``, ``generator``, ``output_type`` and, by task,
    ``height``/``width``/``latents`` (txt2img), ``image`` (normalised latents), ``strength``,
    ``mask_image``/``masked_image_latents`` (inpaint), ``denoising_start``/``denoising_end`` (refiner
    switch-over), ``guidance_scale`` and FLUX's ``max_sequence_length``/``true_cfg_scale``.
    """

    pipe: Any
    model: "LoadedModel"
    req: "GenerationRequest"
    task: str
    prompts: list[str]
    negatives: list[str]
    seeds: list[int]
    batch_index: int
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    infotext_params: dict[str, Any] = field(default_factory=dict)
    extra_networks: list["ExtraNetworkCall"] = field(default_factory=list)
    #: called after every denoising step with ``(step, total, timestep, latents)`` (a hook may append;
    #: the scripts' per-step callbacks join here); a callback must not keep ``latents``
    step_callbacks: list[Callable[[int, int, Any, Any], None]] = field(default_factory=list)


SamplingHook = Callable[[SamplingContext], ContextManager[None]]
"""``hook(ctx)`` returns a context manager entered around one pipeline call (see module docstring)."""


def handled_network_kinds(hooks: Sequence[SamplingHook]) -> frozenset[str]:
    """The extra-network kinds the given hooks declare (``extra_network_kinds`` attribute)."""
    kinds: set[str] = set()
    for hook in hooks:
        kinds.update(str(kind).lower() for kind in getattr(hook, "extra_network_kinds", ()))
    return frozenset(kinds)
