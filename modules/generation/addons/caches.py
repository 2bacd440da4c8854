"""One place to build the add-on hooks of a generation job (LoRA, embeddings, VAE choice, ControlNet).

A job handler keeps one :class:`AddonCaches` for the studio's lifetime (e.g. on the app context) and per
job calls::

    hooks = addon_hooks(ctx.paths, ctx.hashes, caches, units=units_from_alwayson(payload.alwayson_scripts),
                        sd_vae=settings.sd_vae, allow_pickle=ctx.flags.allow_pickle)
    with selected_vae(active.model, settings.sd_vae, ctx.paths.vae_dir, caches.vae):
        result = run_txt2img(req, active, control, output, hooks=hooks)

(:func:`modules.generation.addons.vae_select.selected_vae` around the job makes img2img's init encoding and the
decode between hires passes use the chosen VAE too; the hook alone covers the pipeline calls.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from modules.generation.controlnet.hook import controlnet_hook
from modules.generation.controlnet.models import ControlNetCache
from modules.generation.controlnet.preprocess import AnnotatorCache
from modules.generation.addons.embeddings import EmbeddingCache, embeddings_hook
from modules.generation.addons.lora import LoraCache, lora_hook
from modules.generation.addons.vae_select import VaeCache, vae_hook

if TYPE_CHECKING:
    from modules.generation.controlnet.units import ControlNetUnit
    from modules.generation.addons.hooks import SamplingHook
    from modules.generation.prompts.parser import ExtraNetworkCall
    from modules.models.hashing import HashCache
    from modules.paths import Paths


@dataclass
class AddonCaches:
    """Parsed/loaded add-on files, kept across jobs by their owner (never module-global)."""

    lora: LoraCache = field(default_factory=LoraCache)
    embeddings: EmbeddingCache = field(default_factory=lambda: EmbeddingCache(max_entries=64))
    vae: VaeCache = field(default_factory=VaeCache)
    controlnets: ControlNetCache = field(default_factory=ControlNetCache)
    annotators: AnnotatorCache | None = None

    def annotators_for(self, paths: "Paths") -> AnnotatorCache:
        """The detector cache for ``<models>/annotators`` (created on first use)."""
        if self.annotators is None:
            self.annotators = AnnotatorCache(paths.controlnet_dir.parent / "annotators")
        return self.annotators


def addon_hooks(paths: "Paths", hashes: "HashCache | None", caches: AddonCaches, *,
                units: Sequence["ControlNetUnit"] = (), sd_vae: str | None = None,
                allow_pickle: bool = False) -> list["SamplingHook"]:
    """The hooks of one job: LoRA tags, embeddings, the VAE choice and (when given) ControlNet units."""
    hooks: list["SamplingHook"] = [
        lora_hook(paths.lora_dir, hashes, caches.lora, allow_pickle=allow_pickle),
        embeddings_hook(paths.embeddings_dir, hashes, caches.embeddings),
        vae_hook(sd_vae, paths.vae_dir, hashes, caches.vae, allow_pickle=allow_pickle),
    ]
    if any(unit.is_active for unit in units):
        hooks.append(controlnet_hook(units, paths.controlnet_search_dirs,
                                     annotators=caches.annotators_for(paths), models=caches.controlnets,
                                     allow_pickle=allow_pickle))
    return hooks


def check_request_addons(paths: "Paths", caches: AddonCaches, req: object, sd_vae: str | None,
                         networks: Sequence["ExtraNetworkCall"] = ()) -> None:
    """What can be refused before a job is queued (InvalidRequestError subclasses, naming what is missing):
    a LoRA of the prompt, a VAE, a ControlNet model or preprocessor that is not installed, a preprocessor
    whose annotator weights are missing."""
    from modules.generation.controlnet.models import ControlNetLibrary, controlnet_dirs
    from modules.generation.controlnet.preprocess import PreprocessorError, find_preprocessor
    from modules.generation.addons.lora import LoraLibrary
    from modules.generation.addons.vae_select import resolve_vae

    loras = LoraLibrary((paths.lora_dir,))
    for call in networks:
        if call.kind.lower() in ("lora", "lyco") and call.items:
            loras.find(call.items[0])

    checkpoint = getattr(req, "checkpoint", None)
    if sd_vae and sd_vae not in ("Automatic", "None"):
        resolve_vae(sd_vae, Path(checkpoint or "."), paths.vae_dir)
    units = [u for u in getattr(req, "controlnet_units", ()) if u.is_active]
    if not units:
        return
    dirs = paths.controlnet_search_dirs
    library = ControlNetLibrary(controlnet_dirs(dirs[0], dirs[1:]))
    annotators = caches.annotators_for(paths)
    for index, unit in enumerate(units):
        library.find(unit.model)
        pre = find_preprocessor(unit.module)
        missing = annotators.missing(pre.files) if pre.files else []
        if missing:
            raise PreprocessorError(f"ControlNet unit {index}: preprocessor '{pre.name}' needs "
                                    f"{', '.join(missing)} in {annotators.folder} (the files of the "
                                    "lllyasviel/Annotators repository), or pick a weight-free module such as canny")
