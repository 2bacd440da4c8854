"""Load FLUX.1 dev / schnell offline from the files users actually have (issue #2).

Accepted layouts:

* a BFL transformer-only file (``flux1-dev.safetensors``: keys bare or under
  ``model.diffusion_model.``; a diffusers-layout transformer file works too). CLIP-L, T5-XXL and
  the VAE then come from ``models/text_encoder/`` and ``models/VAE/`` (:mod:`flux_discovery`);
* a ComfyUI all-in-one file (``text_encoders.clip_l.transformer.*``,
  ``text_encoders.t5xxl.transformer.*``, ``vae.*`` beside the transformer);
* a diffusers folder (``model_index.json`` naming ``FluxPipeline``).

Configs come from ``configs/families/flux-{dev,schnell}`` overlaid with what the header shapes and
the ``atelier.components`` metadata say (:mod:`flux_components`). Tokenizers are local: the CLIP
BPE generated from open-clip-torch and the vendored T5 ``tokenizer.json``
(``configs/families/README.md``). Nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.models.errors import ModelLoadError
from modules.models.families import REPO_ROOT, ModelFamily
from modules.models.flux_components import build_component, component_config
from modules.models.flux_discovery import (
    CompanionNeeds,
    component_dirs,
    explicit_vae,
    find_companions,
    missing_message,
)
from modules.models.flux_source import inspect_flux_file

if TYPE_CHECKING:
    import torch

    from modules.models.detect import Detection
    from modules.models.types import LoadedModel, LoadOptions

#: The vendored T5 tokenizer, shared by every FLUX.1 family.
T5_TOKENIZER_DIR = REPO_ROOT / "configs" / "families" / "flux-dev" / "tokenizer_2"


def flux_dtype(value: Any, device: str) -> "torch.dtype":
    """The compute dtype: float16 becomes bfloat16 on GPUs that have it (FLUX overflows in fp16)."""
    import torch

    from modules.models.types import torch_dtype

    dtype = torch_dtype(value)
    if dtype == torch.float16 and str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return dtype


def t5_tokenizer_dir(family: ModelFamily) -> Path:
    """The family's own T5 tokenizer folder when it has one, else the shared vendored one."""
    own = family.config_path / "tokenizer_2"
    return own if (own / "tokenizer.json").is_file() else T5_TOKENIZER_DIR


def load_tokenizers(family: ModelFamily, cache_dir: Path, folder: Path | None = None) -> tuple[Any, Any]:
    """(CLIP, T5) tokenizers: a diffusers folder's own when complete, else the shipped ones."""
    from transformers import CLIPTokenizer, T5TokenizerFast

    from modules.models.tokenizers import load_clip_tokenizer

    own_clip = folder / "tokenizer" if folder is not None else None
    if own_clip is not None and (own_clip / "vocab.json").is_file() and (own_clip / "merges.txt").is_file():
        clip = CLIPTokenizer.from_pretrained(str(own_clip), local_files_only=True)
    else:
        clip = load_clip_tokenizer(family.config_path / "tokenizer", cache_dir)
    t5_dir = folder / "tokenizer_2" if folder is not None else None
    if t5_dir is None or not any((t5_dir / f).is_file() for f in ("tokenizer.json", "spiece.model")):
        t5_dir = t5_tokenizer_dir(family)
    if not (t5_dir / "tokenizer.json").is_file():
        raise ModelLoadError(t5_dir / "tokenizer.json", "the shipped T5 tokenizer file is missing")
    return clip, T5TokenizerFast.from_pretrained(str(t5_dir), local_files_only=True)


def _scheduler(config_dir: Path) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    data = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    return FlowMatchEulerDiscreteScheduler.from_config(data)


def _pipeline(family: ModelFamily, scheduler_dir: Path, tokenizers: tuple[Any, Any], modules: dict) -> Any:
    import diffusers

    cls = getattr(diffusers, family.pipelines["txt2img"])
    return cls(scheduler=_scheduler(scheduler_dir), tokenizer=tokenizers[0], tokenizer_2=tokenizers[1], **modules)


def _check_variant(path: Path, family: ModelFamily, variant: str) -> None:
    if family.id != f"flux-{variant}":
        guidance = "has" if variant == "dev" else "has no"
        raise ModelLoadError(path, f"detected as {family.label} but its transformer {guidance} guidance_in")


def build_from_file(path: Path, family: ModelFamily, options: "LoadOptions") -> tuple[Any, dict[str, dict]]:
    """(pipeline, component configs) from a BFL / ComfyUI / all-in-one file plus companion files."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ModelLoadError(path, "FLUX checkpoints are read from .safetensors files only")
    flux = inspect_flux_file(path)
    _check_variant(path, family, flux.variant)
    sources = dict(flux.sources)
    configs = {"transformer": component_config(sources["transformer"], family)}
    needs = CompanionNeeds.from_transformer_config(configs["transformer"])
    if options.vae:
        sources["vae"] = explicit_vae(Path(options.vae), needs)
    missing = [c for c in flux.missing if c not in sources]
    if missing:
        text_dirs, vae_dirs = component_dirs(path, options)
        found, notes = find_companions(missing, needs, text_dirs, vae_dirs)
        sources.update(found)
        still = [c for c in missing if c not in found]
        if still:
            raise ModelLoadError(path, missing_message(still, needs, text_dirs, vae_dirs, notes))
    for name, source in sources.items():
        configs.setdefault(name, component_config(source, family))
    device = str(options.device)
    dtype = flux_dtype(options.dtype, device)
    modules = {name: build_component(source, configs[name], dtype, device) for name, source in sources.items()}
    tokenizers = load_tokenizers(family, Path(options.cache_dir))
    return _pipeline(family, family.config_path, tokenizers, modules), configs


def build_from_folder(folder: Path, family: ModelFamily, options: "LoadOptions") -> tuple[Any, dict[str, dict]]:
    """(pipeline, component configs) from a diffusers folder; tokenizers fall back to the shipped ones."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    folder = Path(folder)
    device = str(options.device)
    dtype = flux_dtype(options.dtype, device)
    classes = {"transformer": (FluxTransformer2DModel, "torch_dtype"), "vae": (AutoencoderKL, "torch_dtype"),
               "text_encoder": (CLIPTextModel, "dtype"), "text_encoder_2": (T5EncoderModel, "dtype")}
    missing = [name for name in classes if not (folder / name / "config.json").is_file()]
    if missing:
        raise ModelLoadError(folder, f"diffusers folder lacks {', '.join(n + '/config.json' for n in missing)}")
    modules = {}
    for name, (cls, dtype_arg) in classes.items():
        try:
            model = cls.from_pretrained(str(folder / name), local_files_only=True, **{dtype_arg: dtype})
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(folder, f"cannot load {name}/ ({str(exc).strip().splitlines()[0][:200]})") from exc
        modules[name] = model.to(device).eval().requires_grad_(False)
    _check_variant(folder, family, "dev" if modules["transformer"].config.guidance_embeds else "schnell")
    has_scheduler = (folder / "scheduler" / "scheduler_config.json").is_file()
    tokenizers = load_tokenizers(family, Path(options.cache_dir), folder)
    pipeline = _pipeline(family, folder if has_scheduler else family.config_path, tokenizers, modules)
    return pipeline, {name: dict(module.config.to_dict() if hasattr(module.config, "to_dict") else module.config)
                      for name, module in modules.items()}


def load_flux(path: Path, detection: "Detection", options: "LoadOptions") -> "LoadedModel":
    """Load a detected FLUX.1 dev/schnell checkpoint (single file or diffusers folder)."""
    from modules.models.types import LoadedModel

    path = Path(path)
    family = detection.family
    build = build_from_folder if path.is_dir() else build_from_file
    pipeline, configs = build(path, family, options)
    return LoadedModel(
        path=path,
        name=path.name if path.is_dir() else path.stem,
        family=family,
        variant=dict(detection.variant),
        pipeline=pipeline,
        prediction_type="flow",
        scheduler_config=dict(pipeline.scheduler.config),
        native_size=tuple(family.default_size),
        latent_channels=int(pipeline.vae.config.latent_channels),
        vae_scale_factor=int(pipeline.vae_scale_factor),
        configs=configs,
    )
