"""The embedded default's images on each backend, side by side: PyTorch fp32, PyTorch with the UNet quantized
(torchao int8 weights, int8 dynamic), ONNX Runtime f32, OpenVINO f32 and bf16; the same prompts, seeds and
sampler through the studio's txt2img runner. Saves a contact sheet (``docs/backends_sheet.png``: one row per
backend, one column per prompt) and writes the "Embedded default on each backend (issue 29)" section of
docs/benchmarks.md with each row's pixel difference from PyTorch and its time.

    python -m bench.backend_images [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "Stable-diffusion" / "atelier-shapes-v1.safetensors"
SHEET = REPO / "docs" / "backends_sheet.png"
PROMPTS = ("a large red circle on a blue background", "a small yellow triangle at the top left",
           "a green square on the right on a white background")
#: (row label, backend, precision, quantization)
ROWS = (("PyTorch fp32", "torch", "f32", "none"), ("PyTorch, int8 weights", "torch", "f32", "int8_weights"),
        ("PyTorch, int8 dynamic", "torch", "f32", "int8_dynamic"), ("ONNX Runtime f32", "onnx", "f32", "none"),
        ("OpenVINO f32", "openvino", "f32", "none"), ("OpenVINO bf16", "openvino", "bf16", "none"))


def _active(cache: Path):  # noqa: ANN202
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    model = load_model(MODEL, LoadOptions(cache_dir=REPO / "cache"))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(MODEL, MODEL.name, False), model=model, sha256=None, load_seconds=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from PIL import Image, ImageDraw

    from modules.backends.quantize import quantize_module
    from modules.backends.registry import get_backend
    from modules.backends.scope import BackendCache, backend_scope
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions, run_txt2img
    from modules.jobs.progress import JobControl

    results: list[tuple[str, list, float | None, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        cache = BackendCache(Path(scratch))
        for label, backend, precision, quantization in ROWS:
            missing = get_backend(backend).missing()
            if missing:
                results.append((label, [], None, missing))
                continue
            active = _active(Path(scratch))
            quantize_module(active.model.pipeline.unet, quantization)
            images = []
            with backend_scope(cache, active, backend, Txt2ImgRequest(), precision):
                warm = Txt2ImgRequest(prompt=PROMPTS[0], steps=2, width=64, height=64, seed=0, sampler_name="DPM++ 2M")
                run_txt2img(warm, active, JobControl(), OutputOptions(save=False, outdir=Path(scratch)))  # warm-up
                started = time.perf_counter()  # after the export, parity check, compilation and a warm-up
                for seed, prompt in enumerate(PROMPTS, start=1):
                    req = Txt2ImgRequest(prompt=prompt, steps=args.steps, width=64, height=64, seed=seed,
                                         sampler_name="DPM++ 2M", cfg_scale=7.0)
                    out = run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=Path(scratch)))
                    images.append(out.images[0].convert("RGB"))
            results.append((label, images, (time.perf_counter() - started) / len(PROMPTS), ""))
            print(label, results[-1][2], flush=True)

    reference = [np.asarray(im, dtype=np.int16) for im in results[0][1]]
    cell, label_width = 96, 150
    sheet = Image.new("RGB", (label_width + cell * len(PROMPTS), cell * len(results)), "white")
    draw = ImageDraw.Draw(sheet)
    lines = [f"The embedded default (atelier-shapes-v1, 64x64) through the studio's txt2img on each backend: "
             f"DPM++ 2M, {args.steps} steps, CFG 7, seeds 1-{len(PROMPTS)}, one image per prompt. Pixel differences "
             f"against PyTorch fp32 over the {len(PROMPTS)} images (0-255).", "",
             "![The embedded default's images on each backend](backends_sheet.png)", "",
             "| backend | max pixel difference | mean pixel difference | s per image |", "| --- | --- | --- | --- |"]
    for row, (label, images, seconds, why) in enumerate(results):
        draw.text((6, row * cell + cell // 2 - 6), label, fill="black")
        if not images:
            lines.append(f"| {label} | not run: {why} | | |")
            continue
        for col, image in enumerate(images):
            sheet.paste(image.resize((cell - 8, cell - 8), Image.NEAREST), (label_width + col * cell + 4, row * cell + 4))
        diffs = [np.abs(np.asarray(im, dtype=np.int16) - ref) for im, ref in zip(images, reference)]
        lines.append(f"| {label} | {max(int(d.max()) for d in diffs)} | {np.mean([d.mean() for d in diffs]):.2f} | "
                     f"{seconds:.2f} |")
    SHEET.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(SHEET, optimize=True)

    from bench.report import machine_line, write_section

    lines += ["", f"Prompts, left to right: {'; '.join(PROMPTS)}.",
              f"{machine_line()} Times include the sampler and the VAE decode; on this tiny model they are dominated "
              "by the shared machine's load (they changed several-fold between two runs minutes apart): read speed "
              "from the UNet tables above, and the pixels from here. The ONNX Runtime and OpenVINO rows include nothing of the export, done before; each row after a "
              "two-step warm-up."]
    print("\n".join(lines))
    write_section("Embedded default on each backend (issue 29)", "\n".join(lines))


if __name__ == "__main__":
    main()
