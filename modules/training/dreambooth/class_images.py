"""Class images for prior preservation: made once by the base model, as queued ``txt2img`` jobs.

They live in the session, ``<session>/class_images/<key>/``, where the key is a hash of what makes them
(base checkpoint, class prompt, size, steps): a resumed run or a new run of the session with the same class
finds them and generates only what is missing; another class prompt or base gets its own folder. Each
missing batch is an ordinary generation job on the device lane (seeds ``seed + index``, not saved to the
outputs), so it shows in the queue with its progress; the images are written here as
``<index>-<sha1>.png`` (diffusers' naming) once its job has finished. With several class prompts (one a
line), image ``i`` is made from prompt ``i % n`` and keeps it beside it as ``<image>.txt``, its caption.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.folder_access import IMAGE_SUFFIXES
from modules.training.lora.errors import TrainingError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl
    from modules.training.dreambooth.request import TrainDreamboothRequest

#: images per generation job (a job's n_iter): small enough that a stop is honoured soon
CHUNK = 8


def class_key(checkpoint: str, req: "TrainDreamboothRequest") -> str:
    spec = {"checkpoint": checkpoint, "prompt": req.class_prompt, "size": req.resolution, "steps": req.class_steps}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def class_folder(session_folder: Path, checkpoint: str, req: "TrainDreamboothRequest") -> Path:
    return session_folder / "class_images" / class_key(checkpoint, req)


def existing(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def save_image(folder: Path, index: int, image: Any) -> Path:
    """Write one class image atomically as ``<index>-<sha1 of its pixels>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(image.tobytes()).hexdigest()[:16]
    path = folder / f"{index:05d}-{digest}.png"
    partial = path.with_name(path.name + ".partial.png")
    image.save(partial)
    partial.replace(path)
    return path


def ensure_class_images(ctx: "AppContext", job: "Job", control: "JobControl", req: "TrainDreamboothRequest",
                        checkpoint: str, session_folder: Path, *,
                        submit: Callable[..., "Job"] | None = None, poll: float = 0.2) -> tuple[Path, int]:
    """Generate the class images the session lacks; (their folder, how many were generated now).

    Stops early (returning what is there) when the training job is stopped; its running generation job is
    cancelled with it.
    """
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    folder = class_folder(session_folder, checkpoint, req)
    have = len(existing(folder))
    need = req.num_class_images - have
    if need <= 0:
        return folder, 0
    prompts = req.class_prompts()
    control.begin(1, need, text=f"generating {need} class image(s) with {checkpoint}")
    made = 0
    while made < need and not control.should_stop:
        index = have + made
        count = min(CHUNK, need - made) if len(prompts) == 1 else 1  # one job: one prompt, consecutive seeds
        prompt = prompts[index % len(prompts)]
        gen = Txt2ImgRequest(prompt=prompt, checkpoint=checkpoint, steps=req.class_steps,
                             width=req.resolution, height=req.resolution, seed=req.seed + index, n_iter=count,
                             save_images=False)
        sub = (submit or submit_job)(ctx, gen, owner=job.owner, source="train_dreambooth")
        while not sub.done.wait(poll):
            if control.should_stop:
                ctx.queue.cancel(sub.id)
                sub.done.wait(60)
                break
            done = sub.control.snapshot()
            control.progress.text = (f"class images {have + made}/{req.num_class_images}: generation job "
                                     f"{sub.id[:8]} at {int(done.fraction * 100)}%")
            control.step(made + int(done.fraction * count))
        if sub.state is not JobState.SUCCEEDED:
            if control.should_stop:
                break
            raise TrainingError(f"the class images could not be generated: {sub.error or sub.state.value}")
        images = list(sub.result.images[:count])
        for offset, image in enumerate(images):
            path = save_image(folder, index + offset, image)
            if len(prompts) > 1:  # its own prompt, read back as its caption (modules.training.lora.dataset)
                path.with_suffix(".txt").write_text(prompt, encoding="utf-8")
        if not images:
            raise TrainingError("the class-image generation job returned no images")
        made += len(images)
        control.step(made)
    control.progress.text = f"{have + made} class image(s) ready" + (" (stopped)" if control.should_stop else "")
    return folder, made
