"""What an A1111 request asked for that the studio did not apply: the ``warnings`` of the answer's ``info``.

A1111 clients send fields for features the studio does not have in their *default* requests: SillyTavern
sends ``restore_faces`` and, with its face option, ADetailer's ``alwayson_scripts`` entry; clients copy
``override_settings`` from A1111's option names. Refusing them would break those clients, and ignoring them
silently would leave the user believing they were applied, so the request runs and ``info`` carries one
sentence per field that was not applied (``info`` is JSON; A1111's keys stay as they are, ``warnings`` is
added after them). What the model could not make exactly (a size, clip skip) is reported by the job itself
(:mod:`modules.generation.fitting`). Style names the studio does not have are passed over, as A1111's
``apply_styles_to_prompt`` passes them over, and so are prompt tags of extra networks it cannot find
(``<lora:missing:1>``, ``<hypernet:x:1>``: A1111 logs "Lora not found" / "Skipping unknown extra network"
and generates without them), and an ``override_settings.sd_vae`` it cannot find (A1111: "Couldn't find VAE
named ...; using None instead"); each is named too, as are sampler parameters (``eta``, ``s_churn``, ...) set
away from A1111's defaults, which the samplers here do not take.

Scripts: an always-on script the studio does not have (ADetailer...) is named here and the request runs
without it; a registered one runs with its arguments, and ``script_name`` names a selectable script that runs
the job or is refused (422), both translated by :mod:`modules.api.sdapi_scripts`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from modules.generation.prompts.parser import LORA_KINDS

if TYPE_CHECKING:
    from modules.api.sdapi_models import _SdGenerationPayload
    from modules.app_context import AppContext
    from modules.generation.requests import GenerationRequest
    from modules.generation.prompts.styles import StyleStore

R = TypeVar("R", bound="GenerationRequest")

log = logging.getLogger(__name__)

#: A1111's ``re_extra_net``: an extra-network tag ``<kind:name[:args]>`` in a prompt
EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")
#: the prompt fields whose extra-network tags are checked
PROMPT_FIELDS = ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt")

#: always-on scripts the studio runs without a registered script (``alwayson_scripts`` keys, any case)
ALWAYSON_SCRIPTS = frozenset({"controlnet"})
#: ``override_settings`` keys a request applies; other keys are global settings, not changed per request
APPLIED_OVERRIDES = frozenset({"CLIP_stop_at_last_layers", "sd_model_checkpoint", "sd_vae", "randn_source",
                               "token_merging_ratio", "token_merging_ratio_img2img", "token_merging_ratio_hr"})
#: A1111's sampler parameters and the values that change nothing there (A1111's defaults: ``eta_ancestral`` 1,
#: ``s_churn`` 0, ``s_tmin`` 0, ``s_tmax`` 0 = infinity, ``s_noise`` 1, ``s_min_uncond`` 0)
SAMPLER_PARAMETERS: dict[str, tuple[float, ...]] = {
    "eta": (1.0,), "s_churn": (0.0,), "s_tmin": (0.0,), "s_tmax": (0.0, float("inf")), "s_noise": (1.0,),
    "s_min_uncond": (0.0,)}


def _overrides_not_applied(overrides: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """Override keys with an effect the request does not get (a value equal to the setting in force is a no-op)."""
    return [key for key, value in overrides.items()
            if key not in APPLIED_OVERRIDES and value is not None and settings.get(key, object()) != value]


def _sampler_parameters_not_applied(payload: "_SdGenerationPayload") -> list[str]:
    """``name=value`` of each sampler parameter set away from A1111's default that the typed request does not
    carry (so the job cannot apply it)."""
    from modules.generation.requests import GenerationRequest

    out = []
    for name, neutral in SAMPLER_PARAMETERS.items():
        value = getattr(payload, name, None)
        if value is not None and value not in neutral and name not in GenerationRequest.model_fields:
            out.append(f"{name}={value:g}")
    return out


def request_warnings(payload: "_SdGenerationPayload", settings: Mapping[str, Any],
                     alwayson: Sequence[str] = ()) -> list[str]:
    """One sentence per requested feature the studio does not apply; ``settings`` are the ones in force,
    ``alwayson`` the lower-case titles of the registered always-on scripts of the request's tab."""
    runs = sorted(ALWAYSON_SCRIPTS.union(alwayson))
    warnings: list[str] = []
    if payload.restore_faces:
        warnings.append("restore_faces: face restoration is not available here; the images are not face-restored")
    if payload.tiling:
        warnings.append("tiling: seamless tiling is not available here; the images are not tileable")
    for name in payload.alwayson_scripts or {}:
        if str(name).strip().lower() not in runs:
            warnings.append(f"alwayson_scripts: {name!r} is not installed here and was not run "
                            f"(available: {', '.join(runs)})")
    sampler_params = _sampler_parameters_not_applied(payload)
    if sampler_params:
        warnings.append(f"{', '.join(sampler_params)}: not applied; the samplers run with A1111's defaults "
                        f"(eta 1, s_churn 0, s_tmin 0, s_tmax infinity, s_noise 1, s_min_uncond 0)")
    ignored = _overrides_not_applied(payload.override_settings or {}, settings)
    if ignored:
        warnings.append(f"override_settings: {', '.join(ignored)} not applied (a request can override "
                        f"{', '.join(sorted(APPLIED_OVERRIDES))}; set the others with POST /sdapi/v1/options)")
    if warnings:
        log.info("A1111 request: %s", "; ".join(warnings))
    return warnings


def known_styles(names: list[str], store: "StyleStore | None") -> tuple[list[str], list[str]]:
    """(the style names ``store`` has, in order; a warning naming the others, if any)."""
    have = set(store.names()) if store is not None else set()
    kept = [name for name in names if name in have]
    missing = [name for name in names if name not in have]
    if not missing:
        return kept, []
    return kept, [f"styles: {', '.join(repr(n) for n in missing)} not found in styles.csv and not applied"]


def lenient_request(ctx: "AppContext", payload: "_SdGenerationPayload", req: R) -> tuple[R, list[str]]:
    """``req`` with the payload's scripts as typed fields (:mod:`modules.api.sdapi_scripts`; an unknown
    ``script_name`` or bad script arguments are an ApiError 422), without what A1111 passes over (unknown styles,
    networks, VAE), and every warning known before the job runs (:func:`request_warnings`, then what was passed
    over), for the answer's ``info``."""
    from modules.api.sdapi_scripts import registered_alwayson, tab_of, with_scripts

    req, script_notes = with_scripts(ctx, payload, req)
    kept, style_notes = known_styles(list(req.styles), ctx.styles)
    if style_notes:
        req = req.model_copy(update={"styles": kept})
    req, network_notes = known_networks(ctx, req)
    req, vae_notes = known_vae(ctx, req)
    warnings = request_warnings(payload, ctx.settings.as_dict(), registered_alwayson(ctx, tab_of(req)))
    return req, [*warnings, *script_notes, *style_notes, *network_notes, *vae_notes]


def _pass_over_networks(text: str, kinds: frozenset[str], lora_found: Callable[[str], bool],
                        missing: list[str]) -> str:
    """``text`` without the tags of network kinds the studio lacks or LoRAs it cannot find (named in ``missing``)."""
    def keep(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).split(":")[0].strip()
        if kind.lower() in kinds and (kind.lower() not in LORA_KINDS or lora_found(name)):
            return match.group(0)
        tag = f"<{kind}:{name}>"
        if tag not in missing:
            missing.append(tag)
        return ""

    return EXTRA_NETWORK_TAG.sub(keep, text)


def known_networks(ctx: "AppContext", req: R) -> tuple[R, list[str]]:
    """``req`` with the prompt tags of networks that are not here taken out, and a warning naming them."""
    from modules.generation.addons.lora import LoraError, LoraLibrary
    from modules.generation.prechecks import network_kinds

    kinds = frozenset(k.lower() for k in network_kinds(ctx))
    library = LoraLibrary((ctx.paths.lora_dir,))

    def lora_found(name: str) -> bool:
        try:
            library.find(name)
        except LoraError:
            return False
        return True

    missing: list[str] = []
    changes = {name: _pass_over_networks(getattr(req, name), kinds, lora_found, missing)
               for name in PROMPT_FIELDS if EXTRA_NETWORK_TAG.search(getattr(req, name, "") or "")}
    if not missing:
        return req, []
    return req.model_copy(update=changes), [f"extra networks not found here and not applied: {', '.join(missing)}"]


def known_vae(ctx: "AppContext", req: R) -> tuple[R, list[str]]:
    """``req`` with a requested VAE that is not here replaced by the checkpoint's own ("None"), as A1111 does,
    and a warning naming it."""
    from pathlib import Path

    from modules.generation.addons.vae_select import VaeSelectError, resolve_vae

    choice = req.sd_vae
    if choice is None or choice.strip() in ("", "Automatic", "None"):
        return req, []
    try:
        resolve_vae(choice, Path(req.checkpoint or "."), ctx.paths.vae_dir)
    except VaeSelectError:
        note = f"sd_vae: {choice!r} not found in {ctx.paths.vae_dir.name}; the checkpoint's own VAE was used"
        return req.model_copy(update={"sd_vae": "None"}), [note]
    return req, []
