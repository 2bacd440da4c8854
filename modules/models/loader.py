"""Load a detected checkpoint (single file or diffusers folder) into a ready diffusers pipeline.

Single files are built against the family's shipped configs (``configs/families/<id>``), overlaid
with the dimensions read from the header shapes and the optional ``atelier.components`` metadata;
weights go through diffusers' own LDM converters with strict key checks. Nothing touches the
network: every ``from_pretrained`` call is local (``local_files_only=True``). FLUX is delegated to
:mod:`modules.models.flux_loader`.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from modules.lazy_imports import DIFFUSERS_IMPORT_LOCK
from modules.models.arch.overlay import ComponentConfigs, ConfigError, build_component_configs
from modules.models.checkpoint import load_state_dict
from modules.models.detect import Detection, detect_checkpoint
from modules.models.errors import ModelLoadError
from modules.models.families import FAMILIES, ModelFamily
from modules.models.pipeline_build import assemble_pipeline, build_scheduler, task_for
from modules.models.prediction import ZERO_TERMINAL_SNR, probe_v_prediction
from modules.models.types import DTYPES, LoadedModel, LoadOptions, torch_dtype

__all__ = ["DTYPES", "LoadOptions", "LoadedModel", "load_model", "torch_dtype"]

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


def _flux_loader() -> Callable[[Path, Detection, LoadOptions], LoadedModel]:
    from modules.models.flux_loader import load_flux  # FLUX's own components: imported when one loads

    return load_flux


#: architectures with a loader of their own (by the family registry's ``architecture``); the rest are
#: the UNet families loaded here
_ARCHITECTURE_LOADERS: Mapping[str, Callable[[], Callable[[Path, Detection, LoadOptions], LoadedModel]]] = (
    MappingProxyType({"flux": _flux_loader}))


def load_model(path: Path, options: LoadOptions) -> LoadedModel:
    """Detect and load ``path``; every failure is a ModelLoadError naming the file and the reason.

    Holds the diffusers import lock (see :mod:`modules.lazy_imports`): a load imports much of diffusers lazily.
    """
    with DIFFUSERS_IMPORT_LOCK:
        return _load_model(Path(path), options)


def _load_model(path: Path, options: LoadOptions) -> LoadedModel:
    detection = detect_checkpoint(path, allow_pickle=options.allow_pickle, prediction_type=options.prediction_type)
    if detection.family.architecture in _ARCHITECTURE_LOADERS:
        return _ARCHITECTURE_LOADERS[detection.family.architecture]()(path, detection, options)
    if path.is_dir():
        return _load_folder(path, detection, options)
    return _load_single_file(path, detection, options)


# --------------------------------------------------------------------------- single file


def _load_single_file(path: Path, detection: Detection, options: LoadOptions) -> LoadedModel:
    from modules.models.convert.ldm_import import ComponentError, build_text_encoder, build_unet

    family, variant = detection.family, dict(detection.variant)
    state, metadata = load_state_dict(path, allow_pickle=options.allow_pickle)
    vae = _external_vae(options) if options.vae else (state, family.vae_prefix, {})
    dtype = torch_dtype(options.dtype)
    configs = _configs(path, family, state, metadata, vae, options)
    try:
        unet = build_unet(state, family.unet_prefix, configs.unet, dtype)
        if variant.pop("prediction_probe", False) and _probe_applies(configs):
            family = _family_for_probe(family, probe_v_prediction(unet))
            variant.update(prediction_type=family.prediction_type, prediction_source="unet_probe")
            if family.config_dir != detection.family.config_dir:
                configs = _configs(path, family, state, metadata, vae, options)
                unet = build_unet(state, family.unet_prefix, configs.unet, dtype)
        components: dict[str, Any] = {"unet": unet}
        components["vae"] = _build_vae(vae[0], vae[1], configs.vae, dtype, options)
        for spec in family.text_encoders:
            components[spec.component] = build_text_encoder(state, spec, configs.text_encoders[spec.component], dtype)
    except ComponentError as exc:
        raise ModelLoadError(path, str(exc)) from exc
    _add_tokenizers(components, family, options.cache_dir)
    scheduler_config = {**configs.scheduler, "prediction_type": variant["prediction_type"]}
    if variant.get("zero_terminal_snr"):
        if variant["prediction_type"] != "v_prediction":
            raise ModelLoadError(path, "the file is marked zero-terminal-SNR (ztsnr) but not v-prediction; "
                                       "set the prediction type override to v_prediction")
        scheduler_config.update(ZERO_TERMINAL_SNR)
    components["scheduler"] = build_scheduler(scheduler_config)
    task = task_for(family, variant)
    pipeline = assemble_pipeline(family.pipelines[task], configs.model_index, components).to(options.device)
    all_configs = {"unet": configs.unet, "vae": configs.vae, **configs.text_encoders}
    return _loaded(path, family, variant, pipeline, scheduler_config, metadata, task, all_configs)


def _configs(
    path: Path, family: ModelFamily, state: Mapping[str, Any], metadata: Mapping[str, str],
    vae: tuple[Mapping[str, Any], str, Mapping[str, str]], options: LoadOptions,
) -> ComponentConfigs:
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    vae_shapes = {key: tuple(value.shape) for key, value in vae[0].items()} if options.vae else None
    try:
        return build_component_configs(
            family, shapes, metadata, vae_shapes=vae_shapes, vae_prefix=vae[1], vae_metadata=vae[2]
        )
    except ConfigError as exc:
        at_fault = options.vae if options.vae and exc.component == "vae" else path
        raise ModelLoadError(at_fault, str(exc)) from exc


def _build_vae(state: Mapping[str, Any], prefix: str, config: dict, dtype: Any, options: LoadOptions) -> Any:
    """Build the VAE; errors name the external VAE file when one was given."""
    from modules.models.convert.ldm_import import ComponentError, build_vae

    try:
        return build_vae(state, prefix, config, dtype)
    except ComponentError as exc:
        if options.vae:
            raise ModelLoadError(options.vae, str(exc)) from exc
        raise


def _external_vae(options: LoadOptions) -> tuple[Mapping[str, Any], str, Mapping[str, str]]:
    """Tensors, key prefix and metadata of an external VAE file (bare LDM keys or a checkpoint's)."""
    assert options.vae is not None
    state, metadata = load_state_dict(Path(options.vae), allow_pickle=options.allow_pickle)
    for prefix in ("first_stage_model.", "vae.", ""):
        if f"{prefix}encoder.conv_in.weight" in state and f"{prefix}decoder.conv_out.weight" in state:
            return state, prefix, metadata
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in state:
        raise ModelLoadError(options.vae, "diffusers-layout VAE files are not supported; use the original layout")
    raise ModelLoadError(options.vae, "not a VAE (no encoder.conv_in / decoder.conv_out tensors)")


def _probe_applies(configs: ComponentConfigs) -> bool:
    """A1111 probes plain 4-channel SD 2.x UNets only."""
    return configs.unet["in_channels"] == 4 and not configs.unet.get("addition_embed_type")


def _family_for_probe(family: ModelFamily, is_v: bool) -> ModelFamily:
    wanted = "v_prediction" if is_v else "epsilon"
    return next(
        (f for f in FAMILIES
         if f.prediction_probe and f.header_rule == family.header_rule and f.prediction_type == wanted),
        family,
    )


def _add_tokenizers(components: dict[str, Any], family: ModelFamily, cache_dir: Path) -> None:
    from modules.models.tokenizers import load_clip_tokenizer

    for spec in family.text_encoders:
        name = spec.component.replace("text_encoder", "tokenizer")
        components[name] = load_clip_tokenizer(family.config_path / name, Path(cache_dir))


# --------------------------------------------------------------------------- diffusers folder


def _load_folder(path: Path, detection: Detection, options: LoadOptions) -> LoadedModel:
    from modules.models.folder_loader import load_folder_components

    family, variant = detection.family, dict(detection.variant)
    components, scheduler_config, index = load_folder_components(
        path, family, dtype=torch_dtype(options.dtype), allow_pickle=options.allow_pickle,
        cache_dir=Path(options.cache_dir),
    )
    unet = components.get("unet")
    if unet is None:
        raise ModelLoadError(path, "diffusers folder has no unet")
    if variant.pop("prediction_probe", False) and unet.config.in_channels == 4:
        family = _family_for_probe(family, probe_v_prediction(unet))
        variant.update(prediction_type=family.prediction_type, prediction_source="unet_probe")
    scheduler_config = {**scheduler_config, "prediction_type": variant["prediction_type"]}
    components["scheduler"] = build_scheduler(scheduler_config)
    task = task_for(family, variant)
    pipeline = assemble_pipeline(family.pipelines[task], index, components).to(options.device)
    configs = {name: _config_dict(components[name])
               for name in ("unet", "vae", "text_encoder", "text_encoder_2") if components.get(name) is not None}
    return _loaded(path, family, variant, pipeline, scheduler_config, {}, task, configs)


def _config_dict(module: Any) -> dict[str, Any]:
    config = module.config
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


# --------------------------------------------------------------------------- result


_RESOLUTION = re.compile(r"^\s*(\d+)\s*[x×,]\s*(\d+)\s*$")


def _loaded(
    path: Path, family: ModelFamily, variant: dict[str, object], pipeline: "DiffusionPipeline",
    scheduler_config: dict, metadata: Mapping[str, str], task: str, configs: Mapping[str, Mapping[str, Any]],
) -> LoadedModel:
    vae_config = pipeline.vae.config
    factor = 2 ** (len(vae_config.block_out_channels) - 1)
    sample = pipeline.unet.config.sample_size
    sample_hw = (sample, sample) if isinstance(sample, int) else tuple(sample)
    native = (sample_hw[1] * factor, sample_hw[0] * factor)
    if match := _RESOLUTION.match(metadata.get("modelspec.resolution", "")):
        native = (int(match[1]), int(match[2]))
    return LoadedModel(
        path=path, name=path.name if path.is_dir() else path.stem, family=family,
        variant=MappingProxyType(variant), pipeline=pipeline, prediction_type=str(variant["prediction_type"]),
        scheduler_config=scheduler_config, native_size=native, latent_channels=int(vae_config.latent_channels),
        vae_scale_factor=factor, task=task, configs=MappingProxyType(dict(configs)),
    )
