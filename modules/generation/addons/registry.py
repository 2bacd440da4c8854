"""The add-ons of each generation job: LoRA and embeddings from the prompt, the VAE choice, ControlNet units.

:class:`JobAddons` lives on the :class:`~modules.app_context.AppContext` for the studio's lifetime. It
keeps the parsed/loaded add-on files (:class:`~modules.generation.addons.caches.AddonCaches`) and builds, per
job, the :data:`~modules.generation.addons.hooks.SamplingHook` list the runners take, plus the
job-wide VAE scope (so img2img's init encoding and the decode between hires passes use the chosen VAE
too). Nothing here imports torch until a job asks for its hooks: start-up stays light.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from modules.generation.addons.caches import AddonCaches
    from modules.generation.controlnet.preprocess import AnnotatorCache
    from modules.generation.addons.hooks import SamplingHook
    from modules.models.hashing import HashCache
    from modules.models.slots import ModelSlots
    from modules.paths import Paths


class JobAddons:
    """Long-lived add-on caches and the per-job hooks built from them."""

    def __init__(self, paths: "Paths", hashes: "HashCache | None", *, allow_pickle: bool = False,
                 slots: "ModelSlots | None" = None) -> None:
        self.paths = paths
        self.hashes = hashes
        self.allow_pickle = allow_pickle
        self.slots = slots  # the model-memory budget ControlNets count against (ModelManager.slots)
        self._caches: "AddonCaches | None" = None
        self._annotators: "AnnotatorCache | None" = None
        self._lock = threading.Lock()

    @property
    def annotators(self) -> "AnnotatorCache":
        """The loaded controlnet-aux detectors of ``<models>/annotators`` (shared by jobs and ``/controlnet/detect``)."""
        with self._lock:
            if self._annotators is None:
                from modules.generation.controlnet.preprocess import AnnotatorCache

                self._annotators = AnnotatorCache(self.paths.controlnet_dir.parent / "annotators")
            return self._annotators

    @property
    def caches(self) -> "AddonCaches":
        annotators = self.annotators
        with self._lock:
            if self._caches is None:
                from modules.generation.addons.caches import AddonCaches
                from modules.generation.controlnet.models import ControlNetCache

                self._caches = AddonCaches(annotators=annotators, controlnets=ControlNetCache(slots=self.slots))
            return self._caches

    @staticmethod
    def vae_choice(req: Any, setting: str | None) -> str | None:
        """The request's VAE when it names one, else the ``sd_vae`` setting."""
        return getattr(req, "sd_vae", None) or setting

    def hooks_for(self, req: Any, sd_vae_setting: str | None = None) -> list["SamplingHook"]:
        """The hooks of one job (LoRA, embeddings, VAE, and the request's ControlNet units)."""
        from modules.generation.addons.caches import addon_hooks

        return addon_hooks(self.paths, self.hashes, self.caches, units=list(getattr(req, "controlnet_units", ())),
                           sd_vae=self.vae_choice(req, sd_vae_setting), allow_pickle=self.allow_pickle)

    @contextlib.contextmanager
    def job_scope(self, model: Any, req: Any, sd_vae_setting: str | None = None) -> Iterator[None]:
        """Use the chosen VAE for the whole job (restored afterwards)."""
        from modules.generation.addons.vae_select import selected_vae

        with selected_vae(model, self.vae_choice(req, sd_vae_setting), self.paths.vae_dir, self.caches.vae,
                          allow_pickle=self.allow_pickle):
            yield

    def network_kinds(self) -> frozenset[str]:
        """The ``<kind:name:weight>`` extra-network kinds the studio handles (``lora``, ``lyco``)."""
        from modules.generation.addons.hooks import handled_network_kinds
        from modules.generation.addons.lora import lora_hook

        return handled_network_kinds([lora_hook(self.paths.lora_dir, self.hashes, self.caches.lora)])
