"""Load the components of a diffusers pipeline folder, locally and strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modules.models.errors import ModelLoadError
from modules.models.families import ModelFamily
from modules.models.tokenizers import load_clip_tokenizer

#: model_index entries a local studio does not load.
SKIPPED_COMPONENTS = frozenset({"safety_checker", "feature_extractor", "image_encoder"})


def read_model_index(folder: Path) -> dict:
    """The folder's ``model_index.json`` as a dict."""
    try:
        data = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(folder, f"unreadable model_index.json ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(folder, "model_index.json is not a JSON object")
    return data


def read_scheduler_config(folder: Path, family: ModelFamily) -> dict:
    """The folder's scheduler config, else the family's shipped one."""
    for base in (folder, family.config_path):
        path = base / "scheduler" / "scheduler_config.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise ModelLoadError(folder, "no scheduler config in the folder or the shipped family config")


def _tokenizer(folder: Path, name: str, family: ModelFamily, cache_dir: Path) -> Any:
    """The folder's own tokenizer files when complete, else the shipped settings + generated BPE."""
    from transformers import CLIPTokenizer

    own = folder / name
    if (own / "tokenizer.json").is_file() or ((own / "vocab.json").is_file() and (own / "merges.txt").is_file()):
        return CLIPTokenizer.from_pretrained(str(own), local_files_only=True)
    return load_clip_tokenizer(family.config_path / name, cache_dir)


def _check_weights(folder: Path, name: str, allow_pickle: bool) -> None:
    sub = folder / name
    if any(sub.glob("*.safetensors")):
        return
    if any(sub.glob("*.bin")) or any(sub.glob("*.ckpt")):
        if not allow_pickle:
            raise ModelLoadError(folder, f"{name}/ holds only pickle weights (.bin); start Atelier with --allow-pickle to load them")
        return
    raise ModelLoadError(folder, f"{name}/ has no weights file")


def _network(folder: Path, name: str, library: str, class_name: str, dtype: Any, allow_pickle: bool) -> Any:
    """A diffusers or transformers model; missing or unexpected weights are errors."""
    import diffusers
    import transformers

    module = {"diffusers": diffusers, "transformers": transformers}.get(library)
    cls = getattr(module, class_name, None) if module else None
    if cls is None:
        raise ModelLoadError(folder, f"component {name} has unsupported class {library}.{class_name}")
    _check_weights(folder, name, allow_pickle)
    dtype_arg = {"torch_dtype": dtype} if library == "diffusers" else {"dtype": dtype}
    try:
        model, info = cls.from_pretrained(
            str(folder / name), local_files_only=True, use_safetensors=None if allow_pickle else True,
            output_loading_info=True, **dtype_arg,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(folder, f"cannot load {name}/ ({str(exc).strip().splitlines()[0][:200]})") from exc
    missing = [k for k in info.get("missing_keys", ()) if not str(k).endswith("position_ids")]
    problems = missing or list(info.get("unexpected_keys", ())) or list(info.get("mismatched_keys", ()))
    if problems:
        raise ModelLoadError(folder, f"{name}/ weights do not match its config (e.g. '{problems[0]}')")
    return model.eval()


def load_folder_components(
    folder: Path, family: ModelFamily, *, dtype: Any, allow_pickle: bool, cache_dir: Path
) -> tuple[dict[str, Any], dict, dict]:
    """(components by model_index name, scheduler config, model_index)."""
    index = read_model_index(folder)
    components: dict[str, Any] = {}
    for name, entry in index.items():
        if name.startswith("_") or not (isinstance(entry, list) and len(entry) == 2):
            continue
        library, class_name = entry
        if library is None or class_name is None or name in SKIPPED_COMPONENTS:
            components[name] = None
        elif name.startswith("tokenizer"):
            components[name] = _tokenizer(folder, name, family, cache_dir)
        elif name != "scheduler":
            components[name] = _network(folder, name, library, class_name, dtype, allow_pickle)
    return components, read_scheduler_config(folder, family), index
