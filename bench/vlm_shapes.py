"""The shapes VLM (``models/VLM/atelier-shapes-vlm``, issue 26 point 3): exact-match answers per question type on
held-out renders and the two-image chat check, asked through the studio's local VLM backend (processor, chat
template, greedy generation). Beside it, on the same renders and questions, the previous offline default (the
shapes classifier's labels answering the same question types). Writes its section of docs/benchmarks.md.

    .venv/bin/python -m bench.vlm_shapes [--renders 200] [--chats 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.report import machine_line, write_section

TITLE = "Shapes VLM (issue 26 point 3)"
ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "models" / "VLM" / "atelier-shapes-vlm"
CLASSIFIER = ROOT / "models" / "classifier" / "atelier-shapes-vit"


class ClassifierAnswers:
    """The previous offline default (``ShapesBackend``: the classifier's labels answer the question about the image
    of the last turn that showed one); a question it cannot answer counts as wrong."""

    def __init__(self) -> None:
        from modules.understanding.backends.shapes import ShapesBackend
        from modules.understanding.interrogate import Interrogator

        self._backend = ShapesBackend(Interrogator([CLASSIFIER]))

    def chat(self, messages, images, **options):
        from modules.understanding.backends.base import Answer
        from modules.understanding.backends.shapes import CannotAnswer

        try:
            return self._backend.chat(messages, images, **options)
        except CannotAnswer:
            return Answer(text="")


def run(renders: int, chats: int) -> dict:
    from modules.embedded.vlm_eval import single_image, two_image_chat
    from modules.understanding.backends.local_vlm import LocalVLMBackend

    from modules.understanding.backends.shapes_vlm import ShapesVLMBackend

    vlm = LocalVLMBackend(FOLDER)
    classifier = ClassifierAnswers()
    return {"vlm": {"single": single_image(vlm, renders).as_dict(), "two_image": two_image_chat(vlm, chats).as_dict()},
            "default": {"single": single_image(ShapesVLMBackend(vlm), renders).as_dict()},
            "classifier": {"single": single_image(classifier, renders).as_dict(),
                           "two_image": two_image_chat(classifier, chats).as_dict()}}


def report(result: dict, renders: int, chats: int, threads: int) -> str:
    vlm, old, default = result["vlm"], result["classifier"], result["default"]
    rows = ["| question type | shapes VLM | offline default (the VLM; yes/no by comparison) | classifier labels "
            "(previous default) |", "| --- | --- | --- | --- |"]
    for kind, row in vlm["single"]["per_type"].items():
        before = old["single"]["per_type"].get(kind, {})
        now = default["single"]["per_type"].get(kind, {})
        rows.append(f"| {kind} | {row['right']}/{row['asked']} = {row['rate']:.1%} | {now.get('rate', 0.0):.1%} | "
                    f"{before.get('right', 0)}/{before.get('asked', 0)} = {before.get('rate', 0.0):.1%} |")
    rows.append(f"| **all** | **{vlm['single']['overall']:.1%}** | {default['single']['overall']:.1%} | "
                f"{old['single']['overall']:.1%} |")
    chat_rows = ["| turn | shapes VLM | classifier labels |", "| --- | --- | --- |"]
    for kind, row in vlm["two_image"]["per_type"].items():
        before = old["two_image"]["per_type"].get(kind, {})
        chat_rows.append(f"| {kind} | {row['right']}/{row['asked']} = {row['rate']:.1%} | "
                         f"{before.get('rate', 0.0):.1%} |")
    per_question = vlm["single"]["seconds"] / max(1, sum(r["asked"] for r in vlm["single"]["per_type"].values()))
    wrong = "\n".join(f"* {q!r}: expected {e!r}, answered {a!r}" for q, e, a in vlm["single"]["wrong_examples"][:8])
    return f"""`python -m bench.vlm_shapes --renders {renders} --chats {chats} --threads {threads}`. {machine_line()}
Held-out renders (scenes drawn from their own seed, never trained on), each question in its canonical phrasing,
greedy decoding through the studio's local VLM backend (`LocalVLMBackend`: `AutoProcessor`, the chat template,
`generate`). Exact match: the answer equals the world's label (`top left`, `small`, `2`, `yes`, the full
description). Shape, colour, position and size are asked about one-shape images; "(two shapes)" rows are two-shape
images. The offline default (`ShapesVLMBackend`, what Ask and Chat use) is the same model, except that a yes/no
question is answered by asking the model what the question names and comparing. The classifier column answers the same questions from `atelier-shapes-vit`'s labels (it has no count
beyond 1 and no two-image memory: it reads the image of the last turn); the star is known to both.

{chr(10).join(rows)}

Two-image chat ({chats} chats): ask about image 1, show image 2 and ask about it, then ask about image 1 again
("... in the first image?"). The check is the last row: the answer about the first image after the second was shown.

{chr(10).join(chat_rows)}

{per_question * 1000:.0f} ms per question on {threads} thread(s) of the shared 2-core machine (noisy: other
processes ran at the same time).

Wrong answers seen (question, expected, answered):

{wrong or "* none"}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result = run(args.renders, args.chats)
    print(json.dumps({k: {"single": v["single"]["overall"],
                          "first again": v.get("two_image", {}).get("per_type", {}).get("first again", {}).get("rate")}
                      for k, v in result.items()}))
    print(write_section(TITLE, report(result, args.renders, args.chats, args.threads)))


if __name__ == "__main__":
    main()
