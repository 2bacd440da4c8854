"""GPU benchmark, ready for a lent GPU: real-size SD 1.x (512²), SDXL (1024²) and FLUX (1024²) with random
weights, the studio's txt2img against raw diffusers in the same run, with torch.compile and with the denoiser
quantized (torchao, ``--quantize``), and peak memory.

    python -m bench.gpu [--families sd1,sdxl,flux-dev] [--steps 20] [--tiny]

The models are built from the family configs the studio ships (``configs/families/<id>``) with random weights
and saved once as diffusers folders under ``cache/bench-gpu/`` (nothing is downloaded); the studio loads each
folder through its own loader. ``--tiny`` shrinks every model (a smoke test on the CPU). Writes the
"GPU: studio against raw diffusers (issue 29)" section of docs/benchmarks.md (not with ``--tiny``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SIZES = {"sd1": 512, "sdxl": 1024, "flux-dev": 1024}


def _random_folder(family: str, tiny: bool, root: Path) -> Path:
    """A diffusers folder of ``family`` with random weights (built once)."""
    import diffusers
    import transformers

    folder = root / (family + ("-tiny" if tiny else ""))
    if (folder / "model_index.json").is_file():
        return folder
    source = REPO / "configs" / "families" / family
    index = json.loads((source / "model_index.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, spec in index.items():
        if not isinstance(spec, list) or spec[0] is None:
            continue
        library, cls_name = spec
        sub = source / name
        if name.startswith("tokenizer") or name == "scheduler":
            import shutil

            shutil.copytree(sub, folder / name, dirs_exist_ok=True)
            continue
        module = diffusers if library == "diffusers" else transformers
        cls = getattr(module, cls_name)
        if library == "diffusers":
            config = cls.load_config(str(sub))
            if tiny:
                config = _shrink(config)
            model = cls.from_config(config)
        else:
            config = transformers.AutoConfig.from_pretrained(str(sub))
            if tiny:
                for key in ("num_hidden_layers", "num_layers"):
                    if hasattr(config, key):
                        setattr(config, key, 2)
            model = cls(config)
        model.save_pretrained(str(folder / name))
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def _shrink(config: dict) -> dict:
    config = dict(config)
    if "block_out_channels" in config and "layers_per_block" in config and "down_block_types" in config:
        config["layers_per_block"] = 1
        if "transformer_layers_per_block" in config:
            config["transformer_layers_per_block"] = 1
    if "num_layers" in config:
        config["num_layers"], config["num_single_layers"] = 1, 1
    return config


def _timed(call, steps: int) -> tuple[float, float]:
    """(seconds per step, peak GPU MiB) of ``call()`` (a whole generation of ``steps`` steps), after a warm-up."""
    call()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    call()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    return seconds, (torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", default="sd1,sdxl,flux-dev")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quantize", default="int8_dynamic", choices=("", "int8_weights", "int8_dynamic"),
                        help="also time the studio with the denoiser quantized this way ('' for no)")
    args = parser.parse_args()

    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions, run_txt2img
    from modules.jobs.progress import JobControl
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "float16" if device == "cuda" else "float32"
    root = REPO / "cache" / "bench-gpu"
    rows = []
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        size = 64 if args.tiny else SIZES[family]
        folder = _random_folder(family, args.tiny, root)
        model = load_model(folder, LoadOptions(device=device, dtype=dtype, cache_dir=REPO / "cache"))
        model.pipeline.set_progress_bar_config(disable=True)
        active = ActiveModel(info=CheckpointInfo(folder, folder.name, True), model=model, sha256=None, load_seconds=0)
        sampler = "Euler" if model.family.architecture != "flux" else "Euler"
        req = Txt2ImgRequest(prompt="a red circle", steps=args.steps, width=size, height=size, seed=1,
                             sampler_name=sampler, cfg_scale=1.0 if model.family.architecture == "flux" else 7.0)
        out = OutputOptions(save=False, outdir=root / "out")

        def studio() -> None:
            run_txt2img(req, active, JobControl(), out)

        pipe = model.pipeline
        raw_kwargs = dict(prompt="a red circle", num_inference_steps=args.steps, height=size, width=size,
                          generator=torch.Generator("cpu").manual_seed(1))
        if model.family.architecture != "flux":
            raw_kwargs["guidance_scale"] = 7.0

        def raw() -> None:
            pipe(**raw_kwargs)

        studio_s, studio_mb = _timed(studio, args.steps)
        raw_s, raw_mb = _timed(raw, args.steps)
        row = {"family": family, "size": size, "raw_it_s": 1 / raw_s, "studio_it_s": 1 / studio_s,
               "ratio": raw_s / studio_s, "peak_mb": studio_mb, "compiled_it_s": None, "int8_it_s": None,
               "int8_mb": None}
        if not args.no_compile and device == "cuda":
            denoiser = getattr(pipe, "unet", None) or pipe.transformer
            compiled = torch.compile(denoiser, mode="max-autotune-no-cudagraphs")
            name = "unet" if hasattr(pipe, "unet") else "transformer"
            original = getattr(pipe, name)
            setattr(pipe, name, compiled)
            try:
                compiled_s, _ = _timed(studio, args.steps)
                row["compiled_it_s"] = 1 / compiled_s
            finally:
                setattr(pipe, name, original)
        if args.quantize:  # last: quantizing is in place (modules/backends/quantize.py, the studio's engine)
            from modules.backends.quantize import denoiser_of, quantize_module

            quantize_module(denoiser_of(pipe)[1], args.quantize)
            int8_s, row["int8_mb"] = _timed(studio, args.steps)
            row["int8_it_s"] = 1 / int8_s
        rows.append(row)
        print(row, flush=True)
        del model, active, pipe
        if device == "cuda":
            torch.cuda.empty_cache()

    lines = [f"Device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU'} ({dtype}); {args.steps} steps, "
             "random weights at real sizes; seconds per step of a whole generation after a warm-up, studio and raw "
             "diffusers side by side in one run.", "",
             f"| family | size | raw diffusers it/s | studio it/s | studio / raw | compiled it/s | peak GPU MiB | "
             f"{args.quantize or 'quantized'} it/s | its peak MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        compiled = f"{r['compiled_it_s']:.2f}" if r["compiled_it_s"] else "n/a"
        int8 = f"{r['int8_it_s']:.2f} | {r['int8_mb']:.0f}" if r["int8_it_s"] else "n/a | n/a"
        lines.append(f"| {r['family']} | {r['size']}² | {r['raw_it_s']:.2f} | {r['studio_it_s']:.2f} | "
                     f"{r['ratio']:.2f}x | {compiled} | {r['peak_mb']:.0f} | {int8} |")
    lines += ["", "Goals of issue 29: studio >= 0.98x raw diffusers; compiled >= 1.2x."]
    print("\n".join(lines))
    if not args.tiny:
        from bench.report import write_section

        write_section("GPU: studio against raw diffusers (issue 29)", "\n".join(lines))


if __name__ == "__main__":
    main()
