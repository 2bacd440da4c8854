"""Export the trained embedded models to the shipped files under `models/`.

* `Stable-diffusion/atelier-shapes-v1.safetensors`: one LDM-layout (A1111) checkpoint, fp16, with the
  component configs in the `atelier.components` metadata key (the loader reads dims it cannot infer there).
* `classifier/atelier-shapes-vit/`: the ViT classifier (`save_pretrained` + its ViTImageProcessor).
* `ControlNet/atelier-shapes-canny-v1.safetensors` + `.json`: diffusers ControlNet state dict and config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextModel

from modules.embedded.train_vae import final_vae_dir

CHECKPOINT_NAME = "atelier-shapes-v1"
CONTROLNET_NAME = "atelier-shapes-canny-v1"
CLASSIFIER_NAME = "atelier-shapes-vit"
MODEL_CARD_SUMMARY = (
    "atelier-shapes-v1: SD 1.x-architecture text-to-image model (64x64) trained from scratch by Atelier on its "
    "synthetic shapes world; the star is held out (for DreamBooth). See atelier-shapes-v1.md."
)


def _fp16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def _public_config(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def checkpoint_metadata(
    unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel, prediction_type: str = "epsilon"
) -> dict[str, str]:
    """The safetensors `__metadata__`: non-default component configs (`atelier.components`) + modelspec keys
    (`modelspec.prediction_type` is how a v-prediction SD 1.x file tells loaders what the header cannot)."""
    from modules.models.convert.ldm import components_metadata

    te_config = text_encoder.config.to_dict()
    configs = {"unet": _public_config(unet.config), "vae": _public_config(vae.config), "text_encoder": te_config}
    return {
        **components_metadata("sd1", configs),
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.prediction_type": "v" if prediction_type == "v_prediction" else "epsilon",
        "modelspec.resolution": "64x64",
        "modelspec.title": CHECKPOINT_NAME,
        "atelier.model_card": MODEL_CARD_SUMMARY,
    }


def export_checkpoint(work_dir: Path, models_dir: Path) -> Path:
    """Write the single-file SD 1.x checkpoint (LDM keys, fp16) of the trained t2i model."""
    from modules.models.convert.ldm import diffusers_to_ldm, save_ldm_checkpoint
    from modules.models.detect import V_PRED_MARKER, ZTSNR_MARKER

    unet = UNet2DConditionModel.from_pretrained(work_dir / "t2i" / "unet")
    vae = AutoencoderKL.from_pretrained(final_vae_dir(work_dir))
    text_encoder = CLIPTextModel.from_pretrained(work_dir / "t2i" / "text_encoder")
    state = diffusers_to_ldm(unet.state_dict(), vae.state_dict(), text_encoder.state_dict(),
                             unet_config=dict(unet.config), family="sd1")
    target = models_dir / "Stable-diffusion" / f"{CHECKPOINT_NAME}.safetensors"
    scheduler = json.loads((work_dir / "t2i" / "scheduler" / "scheduler_config.json").read_text())
    prediction = scheduler["prediction_type"]
    state = _fp16(state)
    if scheduler.get("rescale_betas_zero_snr"):
        # ComfyUI's markers (empty tensors) for a zero-terminal-SNR v-prediction model; Atelier reads them too
        state.update({V_PRED_MARKER: torch.empty(0, dtype=torch.float16), ZTSNR_MARKER: torch.empty(0, dtype=torch.float16)})
    return save_ldm_checkpoint(target, state, checkpoint_metadata(unet, vae, text_encoder, prediction))


def export_controlnet(work_dir: Path, models_dir: Path) -> Path:
    """Write the ControlNet state dict (fp16, diffusers keys) and its config next to it."""
    controlnet = ControlNetModel.from_pretrained(work_dir / "controlnet")
    target = models_dir / "ControlNet" / f"{CONTROLNET_NAME}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    config = _public_config(controlnet.config)
    save_file(_fp16(controlnet.state_dict()), str(target),
              metadata={"atelier.controlnet": "canny", "atelier.config": json.dumps(config, sort_keys=True),
                        "modelspec.architecture": "stable-diffusion-v1/controlnet"})
    target.with_suffix(".json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}, indent=2))
    return target


def export_classifier(work_dir: Path, models_dir: Path) -> Path:
    """Copy config.json, model.safetensors and preprocessor_config.json of the classifier."""
    target = models_dir / "classifier" / CLASSIFIER_NAME
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "accuracy.json"):
        if (work_dir / "classifier" / name).exists():
            shutil.copy2(work_dir / "classifier" / name, target / name)
    return target


def load_controlnet(path: Path) -> ControlNetModel:
    """Load a ControlNet exported by `export_controlnet` (state dict + JSON config), in fp32."""
    from safetensors.torch import load_file

    config = json.loads(path.with_suffix(".json").read_text())
    config.pop("_class_name", None)
    model = ControlNetModel.from_config(config)
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model.eval()


def export_all(work_dir: Path, models_dir: Path) -> list[Path]:
    """Export whatever stages are finished in `work_dir`."""
    written = []
    if (work_dir / "classifier").exists():
        written.append(export_classifier(work_dir, models_dir))
    if (work_dir / "controlnet").exists():
        written.append(export_controlnet(work_dir, models_dir))
    if (work_dir / "t2i").exists():
        checkpoint = export_checkpoint(work_dir, models_dir)
        written += [checkpoint, write_card(work_dir, checkpoint)]
    return written


def write_card(work_dir: Path, checkpoint: Path, notes: str = "") -> Path:
    """Write the model card next to the checkpoint, keeping an existing measured-scores section; `notes`
    (default: `work_dir/card-notes.md`) go under the training table."""
    from modules.embedded.card import model_card
    from modules.embedded.config import Recipe

    card = checkpoint.with_suffix(".md")
    notes_file = work_dir / "card-notes.md"   # what happened in this particular run (resumes, restarts)
    if not notes and notes_file.exists():
        notes = notes_file.read_text(encoding="utf-8").strip()
    previous = card.read_text(encoding="utf-8") if card.exists() else ""
    text = model_card(work_dir, Recipe(), None, checkpoint.stat().st_size, notes)
    if "## Measured scores" in previous:
        scores = previous[previous.index("## Measured scores"):]
        scores = scores[: scores.index("## Limits")] if "## Limits" in scores else scores
        text = text.replace("## Limits", scores.rstrip() + "\n\n## Limits", 1)
    card.write_text(text, encoding="utf-8")
    return card
