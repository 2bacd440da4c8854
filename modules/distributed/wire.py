"""What crosses between the studio and an actor: plain dicts of JSON types and bytes (Ray pickles them).

A generation result goes to the studio as PNG bytes and their infotexts, plus its other fields; the
studio saves the images itself (:func:`save_outputs`), so nothing depends on a worker's disk.
"""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modules.generation.results import GenerationResult, OutputOptions

#: result fields not sent as they are (the images as PNG bytes; paths are the studio's; the seed plan rebuilt)
_NOT_SENT = ("images", "paths", "seed_plan")


def pack_result(result: "GenerationResult") -> dict[str, Any]:
    """A generation result as a dict of plain values (images as PNG bytes, without text chunks)."""
    images = []
    for image in result.images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append(buffer.getvalue())
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in _NOT_SENT}
    plan = result.seed_plan
    seed_plan = None if plan is None else {"all_seeds": list(plan.all_seeds), "all_subseeds": list(plan.all_subseeds),
                                           "seed": plan.seed, "subseed": plan.subseed}
    return {"images": images, "fields": fields, "seed_plan": seed_plan}


def unpack_result(packed: dict[str, Any], output: "OutputOptions") -> "GenerationResult":
    """The studio's :class:`GenerationResult` from an actor's packed one, its images saved here as the
    job's output options say (with their infotext), exactly as a local run would."""
    from PIL import Image

    from modules.generation.results import GenerationResult
    from modules.generation.sampling.seeds import SeedPlan
    from modules.images.saving import save_generated_image

    fields = dict(packed["fields"])
    result = GenerationResult(**fields)
    plan = packed.get("seed_plan")
    if plan is not None:
        result.seed_plan = SeedPlan(all_seeds=tuple(plan["all_seeds"]), all_subseeds=tuple(plan["all_subseeds"]),
                                    seed=plan["seed"], subseed=plan["subseed"])
    for data, infotext, seed in zip(packed["images"], result.infotexts, result.seeds):
        image = Image.open(io.BytesIO(data))
        image.load()
        if output.write_infotext:
            image.info["parameters"] = infotext
        path = None
        if output.save:
            path = save_generated_image(image, outdir=output.outdir, seed=seed,
                                        infotext=infotext if output.write_infotext else "")
        result.images.append(image)
        result.paths.append(path)
    return result


def progress_of(control: Any) -> dict[str, Any]:
    """An actor's running job's progress, and its latest preview as PNG bytes (None when it has none)."""
    snap = control.snapshot()
    preview = control.preview_png() if snap.preview_id else None
    return {"job_no": snap.job_no, "job_count": snap.job_count, "step": snap.step, "total_steps": snap.total_steps,
            "text": snap.text, "preview_id": snap.preview_id, "preview": preview}
