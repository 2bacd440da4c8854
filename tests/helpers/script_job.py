"""A stand-in for a running job (``p``) that makes solid-colour images without a model: for testing the
grid scripts' loops (order, blanks, interrupts, skips, infotext) fast."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from PIL import Image

from modules.generation.results import GenerationResult
from modules.images.infotext import build_infotext
from modules.jobs.progress import JobControl


@dataclass
class FakeJob:
    request: Any
    tab: str = "txt2img"
    control: JobControl = field(default_factory=JobControl)
    warnings: list[str] = field(default_factory=list)
    results: list[GenerationResult] = field(default_factory=list)
    processed: list[Any] = field(default_factory=list)
    grids: list[tuple[Image.Image, str]] = field(default_factory=list)
    cell_counts: list[int] = field(default_factory=list)
    #: called with (call number, request) before each image is made: a test stops or skips there
    before: Callable[[int, Any], None] | None = None

    @contextlib.contextmanager
    def cells(self, count: int, label: str = "cell") -> Iterator[None]:
        self.cell_counts.append(count)
        yield

    def process(self, request: Any, *, label: str = "") -> GenerationResult:
        self.control.skip_event.clear()  # as the runner's begin_batch
        if self.before is not None:
            self.before(len(self.processed), request)
        self.processed.append(request)
        shade = (request.steps * 10 % 256, int(request.cfg_scale * 10) % 256, request.seed % 256)
        size = (request.width or 64, request.height or 64)
        result = GenerationResult(width=size[0], height=size[1], sampler_name=request.sampler_name)
        for i in range(request.batch_size * request.n_iter):
            text = build_infotext(request.prompt, request.negative_prompt,
                                  {"Steps": request.steps, "Sampler": request.sampler_name,
                                   "CFG scale": request.cfg_scale, "Seed": request.seed + i,
                                   "Size": f"{size[0]}x{size[1]}", "Version": "test"})
            result.images.append(Image.new("RGB", size, shade))
            result.infotexts.append(text)
            result.paths.append(None)
            result.seeds.append(request.seed + i)
            result.subseeds.append(request.subseed)
            result.prompts.append(request.prompt)
            result.negative_prompts.append(request.negative_prompt)
        result.interrupted = self.control.should_stop
        self.results.append(result)
        return result

    def save_grid(self, image: Image.Image, infotext: str, *, seed: int = 0) -> None:
        self.grids.append((image, infotext))
        return None
