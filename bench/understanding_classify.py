"""Classification and INT8 (issue 26): the embedded shapes classifier (``atelier-shapes-vit``) in float (torch) and
as its INT8 ONNX export (dynamic quantization, onnxruntime), side by side in one run.

On N held-out renders of the default world (seeds the classifier was not trained on; one shape each): top-1
agreement of INT8 with float (the whole prediction: every label group; and per group), each one's accuracy against
the rendered truth, and the forward time of float torch, float ONNX and INT8 ONNX on the same pre-processed
batches (rounds interleaved, the best and the median of each), batch 1 and batch 32. The export and quantization
are the studio's own (:mod:`modules.understanding.classify.int8`).

The shapes classifier is tiny (0.6 M parameters, 64×64 input), so it also times a random-weight ViT-B/16 at 224
(86 M parameters, the architecture of ``google/vit-base-patch16-224``; ViT-L/16-384 is the same family, larger)
for the speed-up at a realistic size; its random weights say nothing about agreement, so only its timing is shown.

    .venv/bin/python -m bench.understanding_classify [--images 500] [--threads 2] [--rounds 5] [--no-vit-base]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.report import machine_line, write_section

TITLE = "Classification and INT8 (issue 26)"
SEED = 2026_12_07   # not the classifier's training seed: these renders are held out


def _renders(count: int) -> tuple[list[Any], list[dict[str, str]]]:
    from modules.world.dataset import scene_rng
    from modules.world.render import render_scene
    from modules.world.sampling import sample_scene, scene_labels

    images, truth = [], []
    for index in range(count):
        scene = sample_scene(scene_rng(SEED, index, "classify-bench"), max_shapes=1)
        images.append(render_scene(scene, size=64))
        truth.append(scene_labels(scene))
    return images, truth


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _rounds(runners: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Each runner timed once per round, the runners interleaved (so load changes hit them alike)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for fn in runners.values():
        fn()   # warm-up
    for _ in range(rounds):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _timing_rows(label: str, batch: int, times: dict[str, list[float]], per: int) -> list[str]:
    base = min(times["float (torch)"])
    rows = []
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        rows.append(f"| {label} | {name} | {batch} | {best / per * 1000:.2f} | {median / per * 1000:.2f} | "
                    f"{base / best:.2f}x |")
    return rows


def _time_model(model: Any, float_onnx: Path, int8_onnx: Path, pixels: Any, threads: int, rounds: int,
                label: str, batch: int, chunks: int, best: dict[tuple[str, int, str], float]) -> list[str]:
    import numpy as np
    import torch

    float_sess, int8_sess = _session(float_onnx, threads), _session(int8_onnx, threads)
    batches = [pixels[i * batch:(i + 1) * batch] for i in range(chunks)]
    arrays = [b.numpy().astype(np.float32) for b in batches]

    def torch_run() -> None:
        with torch.inference_mode():
            for b in batches:
                model(pixel_values=b)

    def onnx_run(sess: Any) -> Callable[[], None]:
        return lambda: [sess.run(["logits"], {"pixel_values": a}) for a in arrays]

    runners = {"float (torch)": torch_run, "float (ONNX)": onnx_run(float_sess), "INT8 (ONNX)": onnx_run(int8_sess)}
    times = _rounds(runners, rounds)
    for name, values in times.items():
        best[(label, batch, name)] = min(values) / (batch * chunks)
    return _timing_rows(label, batch, times, batch * chunks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and onnxruntime threads (1: on a shared, busy machine torch's 2-thread pool spins)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-vit-base", action="store_true", help="leave out the random-weight ViT-B/16 timing")
    args = ap.parse_args()

    import numpy as np
    import torch

    from modules.understanding.classify.int8 import agreement, export_onnx, quantize
    from modules.understanding.image_models import label_groups, load_folder, top1_keys

    torch.set_num_threads(args.threads)
    repo = Path(__file__).resolve().parent.parent
    model = load_folder(repo / "models" / "classifier" / "atelier-shapes-vit")
    images, truth = _renders(args.images)
    load_before = os.getloadavg()[0]
    timing: list[str] = []
    best: dict[tuple[str, int, str], float] = {}
    shapes_label, vit_label = "atelier-shapes-vit (0.6 M, 64 px)", "ViT-B/16 random weights (86 M, 224 px)"
    with tempfile.TemporaryDirectory() as tmp:
        float_onnx, int8_onnx = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        start = time.perf_counter()
        export_onnx(model, float_onnx)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        quantize(float_onnx, int8_onnx)
        quant_s = time.perf_counter() - start
        sizes = (float_onnx.stat().st_size / 2**20, int8_onnx.stat().st_size / 2**20)

        pixels = model.pixels(images)
        float_logits = model.logits(images, 64)
        int8_sess = _session(int8_onnx, args.threads)
        int8_logits = np.concatenate([int8_sess.run(["logits"], {"pixel_values": pixels[i:i + 64].numpy()})[0]
                                      for i in range(0, len(images), 64)])
        labels, groups = model.labels, label_groups(model.labels)
        agreed = agreement(float_logits, int8_logits, labels)
        group_rows = []
        float_keys = [k.split(", ") for k in top1_keys(float_logits, labels, groups)]
        int8_keys = [k.split(", ") for k in top1_keys(int8_logits, labels, groups)]
        for g_index, group in enumerate(groups):
            same = sum(f[g_index] == q[g_index] for f, q in zip(float_keys, int8_keys))
            right_f = sum(f[g_index] == f"{group}={t[group]}" for f, t in zip(float_keys, truth))
            right_q = sum(q[g_index] == f"{group}={t[group]}" for q, t in zip(int8_keys, truth))
            n = len(images)
            group_rows.append(f"| {group} | {same / n:.3f} | {right_f / n:.3f} | {right_q / n:.3f} |")
        all_f = sum(all(f[i] == f"{g}={t[g]}" for i, g in enumerate(groups)) for f, t in zip(float_keys, truth))
        all_q = sum(all(q[i] == f"{g}={t[g]}" for i, g in enumerate(groups)) for q, t in zip(int8_keys, truth))
        max_diff = float(np.abs(float_logits - int8_logits).max())

        chunks1 = min(64, len(images))
        timing += _time_model(model.model, float_onnx, int8_onnx, pixels, args.threads, args.rounds,
                              shapes_label, 1, chunks1, best)
        chunks32 = max(1, min(4, len(images) // 32))
        timing += _time_model(model.model, float_onnx, int8_onnx, pixels, args.threads, args.rounds,
                              shapes_label, 32, chunks32, best)

        vit_sizes = None
        if not args.no_vit_base:
            from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

            from modules.understanding.image_models import ImageModel

            torch.manual_seed(0)
            base_folder = Path(tmp) / "vit-base"
            ViTForImageClassification(ViTConfig(num_labels=1000)).save_pretrained(base_folder)   # ViT-B/16-224
            ViTImageProcessor().save_pretrained(base_folder)
            vit = load_folder(base_folder)
            assert isinstance(vit, ImageModel)
            b_float, b_int8 = Path(tmp) / "vitb.onnx", Path(tmp) / "vitb.int8.onnx"
            export_onnx(vit, b_float)
            quantize(b_float, b_int8)
            vit_sizes = (b_float.stat().st_size / 2**20, b_int8.stat().st_size / 2**20)
            vit_pixels = vit.pixels(images[:8])
            timing += _time_model(vit.model, b_float, b_int8, vit_pixels, args.threads, max(2, args.rounds // 2),
                                  vit_label, 8, 1, best)
    load_after = os.getloadavg()[0]
    n = len(images)
    body = f"""{machine_line()} torch and onnxruntime threads: {args.threads}; 1-minute load average {load_before:.1f}
before and {load_after:.1f} after (the machine is shared, so absolute times are indicative; the ratios come from
rounds interleaved in one run). `python -m bench.understanding_classify`.

{n} held-out renders of the default world (one shape each, seeds not used in training) classified by the embedded
shapes classifier in float (torch) and as its INT8 export (`torch.onnx.export`, then
`onnxruntime.quantization.quantize_dynamic`, weights INT8, activations quantized at run time: the studio's own
`classify_int8_check` path). Export {export_s:.1f} s, quantization {quant_s:.1f} s; ONNX file {sizes[0]:.2f} MB
float, {sizes[1]:.2f} MB INT8.

**Top-1 agreement of INT8 with float (every label group the same): {agreed}/{n} = {agreed / n:.3f}** (the studio's
threshold is 0.97). Largest logit difference: {max_diff:.3f}. Accuracy against the rendered truth, all five groups
right: float {all_f / n:.3f}, INT8 {all_q / n:.3f}.

| group | INT8 = float | float accuracy | INT8 accuracy |
| --- | --- | --- | --- |
{chr(10).join(group_rows)}

Forward time per image (pre-processed pixels, the same batches for each; best and median of {args.rounds} interleaved
rounds; speed-up = the float torch model's best over each one's best):

| model | runtime | batch | best ms/image | median ms/image | speed-up vs float torch |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(timing)}
"""
    if vit_sizes:
        body += (f"\nViT-B/16 ONNX file: {vit_sizes[0]:.0f} MB float, {vit_sizes[1]:.0f} MB INT8 (random weights: "
                 f"timing and size only, no agreement figure).\n")

    def ratio(label: str, batch: int, over: str) -> float:
        return best[(label, batch, over)] / best[(label, batch, "INT8 (ONNX)")]

    body += (f"\nReading: for the tiny shapes classifier the speed-up is ONNX Runtime's, not INT8's (at batch 32 INT8 "
             f"is {ratio(shapes_label, 32, 'float (ONNX)'):.2f}x float ONNX: a 0.6 M-parameter model is bound by "
             f"per-call overhead and activations, not by its weights), so INT8 there buys a smaller file at the "
             f"same accuracy.")
    if vit_sizes:
        body += (f" At ViT-B/16 size the weights dominate and INT8 is {ratio(vit_label, 8, 'float (torch)'):.2f}x "
                 f"float torch and {ratio(vit_label, 8, 'float (ONNX)'):.2f}x float ONNX, with a file "
                 f"{vit_sizes[0] / vit_sizes[1]:.1f}x smaller; ViT-L/16-384 (the issue's model) is larger still.")
    body += (" One thread each: on this shared machine torch's 2-thread pool spins against other work (in a trial, "
             "the shapes classifier at batch 1 took about 400 ms per image on 2 threads against 7 ms on 1), which "
             "would flatter ONNX Runtime.\n")
    body += """
The studio's INT8 gate is measured the same way on the user's own images (Classify → INT8, job kind
`classify_int8_check`), and the figures are recorded with the export; Classify refuses INT8 with the figure when
the agreement is under the threshold.
"""
    path = write_section(TITLE, body)
    print(body)
    print("written to", path)


if __name__ == "__main__":
    main()
