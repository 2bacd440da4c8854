"""LoRA training on more than one device: worker processes joined by ``torch.distributed`` (issue 27 point 7).

The request's ``devices`` picks the launch (:func:`plan`): ``single`` (the default: the job's own process, one
device), ``all`` (one process per visible CUDA GPU, NCCL), ``gpu:N`` (the first N GPUs) or ``cpu:N`` (N CPU
processes joined by gloo: no speed-up on a laptop, but the same code path, which the tests run). The
``train_lora`` job stays the one queued job: its ``run`` starts the workers (:func:`run_lora`, the
``forkserver`` start method), relays their progress to the job's :class:`~modules.jobs.progress.JobControl`
(steps, loss, ETA) and passes stop and pause on to them; a worker's error fails the job with its message, and
the workers end when the studio dies (the job is then offered to resume, as any training job).

Data parallel, deterministic, exactly resumable: at step ``s`` the global batch ``batch_size x world`` is drawn
from the generator seeded by (seed, s), as one process would draw it, and rank ``r`` takes its ``r``-th slice
(ranks see different images, noise and timesteps); the gradients are averaged over the ranks before the
optimizer step, so every rank keeps the same weights and N processes of ``batch_size`` reach what one process
of ``batch_size x N`` reaches (up to float summation order). Rank 0 alone writes: the session's config, state,
loss log, TensorBoard, samples and, at the end, the exported LoRA. A stopped session resumes from its state
with the same ``devices`` (a session's ``devices`` cannot change, as its batches would).
"""

from __future__ import annotations

import os
import queue as queue_module
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from modules.training.lora.errors import TrainingError
from modules.training.lora.request import DEVICES_PATTERN
from modules.training.lora.session import Session

if TYPE_CHECKING:
    import torch

    from modules.jobs.progress import JobControl
    from modules.training.lora.request import TrainLoraRequest

#: seconds the job waits for a worker's next message before it checks the workers are alive
POLL = 0.1
#: what the workers' fork server imports once
PRELOAD = ("torch", "torch.utils.tensorboard", "transformers.models.clip.modeling_clip",
           "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
           "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl", "peft.tuners.lora",
           "modules.training.lora.trainer", "modules.training.lora.export", "modules.models.loader")
#: seconds the other workers get to end after one failed (one blocked in a collective never would)
GRACE = 10.0


@dataclass(frozen=True)
class Launch:
    """How many processes, on what, joined by which torch.distributed backend."""

    world_size: int
    device_type: str  # "cpu" | "cuda"

    @property
    def backend(self) -> str:
        return "nccl" if self.device_type == "cuda" else "gloo"

    def device(self, rank: int) -> str:
        return f"cuda:{rank}" if self.device_type == "cuda" else "cpu"


def plan(devices: str, gpu_count: int | None = None) -> Launch | None:
    """The launch ``devices`` asks for; None for ``single`` (the job's own process). Refused with a message when
    the machine has fewer GPUs than asked (``gpu_count``: CUDA's count when None)."""
    match = re.match(DEVICES_PATTERN, devices or "")
    if match is None:
        raise TrainingError(f"devices {devices!r}: use single, all, gpu:N or cpu:N")
    if devices == "single":
        return None
    if devices.startswith("cpu:"):
        return Launch(int(match.group(3)), "cpu")
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wanted = gpu_count if devices == "all" else int(match.group(3))
    if gpu_count < 2 or wanted > gpu_count:
        raise TrainingError(f"devices {devices!r} needs {'two or more' if devices == 'all' else wanted} CUDA GPUs; "
                            f"this machine has {gpu_count}: use single (or cpu:N to try the multi-process path)")
    return Launch(wanted, "cuda")


class Group:
    """This process's place among the workers, and the collectives the trainer needs (over the default group).
    ``device``: where the collectives' small tensors go (NCCL reduces CUDA tensors only)."""

    def __init__(self, rank: int, world_size: int, device: str = "cpu") -> None:
        self.rank, self.world_size, self.device = rank, world_size, device

    @property
    def lead(self) -> bool:
        return self.rank == 0

    def share(self, batch_size: int) -> slice:
        """This rank's rows of the global batch (``batch_size`` rows each)."""
        return slice(self.rank * batch_size, (self.rank + 1) * batch_size)

    def average_gradients(self, params: Sequence["torch.nn.Parameter"]) -> None:
        """Replace each gradient by its mean over the ranks (one flat all-reduce)."""
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            count = p.numel()
            p.grad = flat[offset:offset + count].view_as(p).clone()
            offset += count

    def mean(self, value: float) -> float:
        """``value`` averaged over the ranks (the logged loss is the global batch's)."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (all ranks stop at the same step)."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def gather_indices(self, index: "torch.Tensor") -> list[list[int]]:
        """Every rank's image indices of this step (for the loss log: which images each rank saw)."""
        import torch
        import torch.distributed as dist

        mine = index.to(self.device).contiguous()
        parts = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine)
        return [p.tolist() for p in parts]


class FollowerSession(Session):
    """A session as ranks other than 0 see it: they read the state to resume from and write nothing."""

    def start(self, req: Any) -> None:
        return None

    def save_state(self, state: dict[str, Any]) -> None:
        return None

    def log(self, record: dict[str, Any]) -> None:
        return None

    def truncate_log(self, step: int) -> None:
        return None


class WorkerControl:
    """The part of :class:`~modules.jobs.progress.JobControl` the trainer uses, in a worker: rank 0 sends its
    progress to the job; stop and pause come from the job through events."""

    def __init__(self, rank: int, messages: Any, stop: Any, pause: Any) -> None:
        from modules.jobs.progress import Progress

        self.rank, self._messages, self._stop, self._pause = rank, messages, stop, pause
        self.progress = Progress()

    def _send(self, *message: Any) -> None:
        if self.rank == 0:
            self._messages.put(message)

    def begin(self, job_count: int, total_steps: int, text: str = "") -> None:
        self.progress.text = text
        self._send("begin", total_steps, text)

    def step(self, step: int, preview_source: Any = None) -> None:
        self._send("step", step, self.progress.text)

    def pause_point(self, poll: float = 0.05) -> bool:
        paused = False
        while self._pause.is_set() and not self._stop.is_set():
            paused = True
            self._stop.wait(poll)
        return paused

    @property
    def should_stop(self) -> bool:
        return self._stop.is_set()


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker needs to rebuild the run (picklable: it crosses to the worker process)."""

    req: "TrainLoraRequest"
    checkpoint: Path
    load_options: Any  # modules.models.loader.LoadOptions; the device is set per rank
    dataset: Path
    roots: tuple[Path, ...]
    size: int | None
    session_folder: Path
    output: Path
    export_metadata: dict[str, str] = field(default_factory=dict)
    threads: int = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def threads_per_worker(world_size: int) -> int:
    return max(1, (os.cpu_count() or 1) // world_size)


def run_lora(spec: WorkerSpec, launch: Launch, control: "JobControl") -> dict[str, Any]:
    """Start ``launch.world_size`` workers on ``spec``, relay their progress to ``control`` until they end;
    rank 0's result (steps, loss, the exported LoRA's path when finished)."""
    import multiprocessing

    # workers fork from a clean server process that imported the training stack once (not from this threaded
    # process): the first launch pays the imports, later ones start in a fraction of it
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    messages, stop, pause = context.Queue(), context.Event(), context.Event()
    address = f"tcp://127.0.0.1:{_free_port()}"
    workers = [context.Process(target=worker, args=(rank, launch, address, spec, messages, stop, pause),
                               name=f"atelier-train-rank{rank}", daemon=True)
               for rank in range(launch.world_size)]
    for process in workers:
        process.start()
    result: dict[str, Any] | None = None
    errors: list[tuple[int, str, bool]] = []
    failed_at: float | None = None  # when a rank failed: the others get GRACE seconds to end, then are killed

    def handle(message: tuple[Any, ...]) -> None:
        nonlocal result
        kind = message[0]
        if kind == "begin":
            control.begin(1, int(message[1]), text=str(message[2]))
        elif kind == "step":
            control.progress.text = str(message[2])
            control.step(int(message[1]))
        elif kind == "done":
            result = dict(message[1])
        elif kind == "error":
            errors.append((int(message[1]), str(message[2]), bool(message[3])))

    control.progress.text = f"starting {launch.world_size} training processes ({launch.backend})"
    try:
        while any(p.is_alive() for p in workers):
            if control.should_stop:
                stop.set()
            (pause.set if control.should_pause and not control.should_stop else pause.clear)()
            try:
                handle(messages.get(timeout=POLL))
            except queue_module.Empty:
                pass
            if failed_at is None and (errors or any(p.exitcode not in (None, 0) for p in workers)):
                stop.set()  # one rank failed: the others stop at their next step, or are ended after GRACE
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE:
                break
        while True:  # what the workers sent just before they ended
            try:
                handle(messages.get(timeout=POLL))
            except queue_module.Empty:
                break
    finally:
        for process in workers:
            process.join(timeout=GRACE if failed_at is None else 0.1)
            if process.is_alive():
                process.kill()
                process.join(5)
    if errors:
        rank, text, user_error = sorted(errors, key=lambda e: (not e[2], e[0]))[0]
        if user_error:
            raise TrainingError(text)
        raise RuntimeError(f"training process {rank} failed: {text}")
    if result is None:
        codes = ", ".join(f"rank {i}: {p.exitcode}" for i, p in enumerate(workers))
        raise RuntimeError(f"the training processes ended without a result ({codes})")
    return result


def _exit_with_the_studio() -> None:
    """End this worker when the process that launched it dies (``kill -9`` of the studio: its job is then
    offered to resume from the session's last state, which no orphaned worker may write past)."""
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(3)

    threading.Thread(target=watch, name="atelier-train-parent-watch", daemon=True).start()


def worker(rank: int, launch: Launch, address: str, spec: WorkerSpec, messages: Any, stop: Any, pause: Any) -> None:
    """One training process (the worker process's target): join the group, load the model, train, rank 0 exports."""
    import dataclasses

    import torch
    import torch.distributed as dist

    from modules.models.errors import ModelLoadError
    from modules.training.lora.errors import DatasetError, SessionError

    user_errors = (DatasetError, SessionError, TrainingError, ModelLoadError)

    _exit_with_the_studio()
    torch.set_num_threads(spec.threads)
    dist.init_process_group(launch.backend, init_method=address, rank=rank, world_size=launch.world_size)
    try:
        from modules.models.loader import load_model
        from modules.training.lora.dataset import load_dataset
        from modules.training.lora.export import export_lora
        from modules.training.lora.trainer import train

        if launch.device_type == "cuda":
            torch.cuda.set_device(rank)
        options = dataclasses.replace(spec.load_options, device=launch.device(rank))
        if launch.device_type == "cpu":  # cpu:N on a GPU machine: the studio's options may say float16
            options = dataclasses.replace(options, dtype="float32")
        model = load_model(spec.checkpoint, options)
        model.pipeline.set_progress_bar_config(disable=True)
        size = spec.size or model.native_size[0]
        images = load_dataset(spec.dataset, list(spec.roots), size, spec.req.instance_prompt)
        group = Group(rank, launch.world_size, launch.device(rank))
        session = Session(spec.session_folder) if group.lead else FollowerSession(spec.session_folder)
        control = WorkerControl(rank, messages, stop, pause)
        outcome = train(spec.req, model, images, session, control, group=group)
        if not group.lead:
            return
        result: dict[str, Any] = {"steps": outcome.last_step, "stopped": outcome.stopped, "images": len(images),
                                  "seconds": round(outcome.seconds, 2),
                                  "last_loss": outcome.losses[-1] if outcome.losses else None,
                                  "processes": launch.world_size, "backend": launch.backend}
        if not outcome.stopped and outcome.last_step >= spec.req.steps:
            path = export_lora(spec.output, model.pipeline, spec.req, family_id=model.family.id, metadata={
                **spec.export_metadata, "ss_resolution": f"({size}, {size})",
                "ss_num_train_images": str(len(images)), "atelier_processes": str(launch.world_size)})
            result["lora"] = str(path)
        messages.put(("done", result))
    except user_errors as exc:
        messages.put(("error", rank, str(exc), True))
    except Exception as exc:  # noqa: BLE001 - reported to the job, which fails with it
        messages.put(("error", rank, f"{exc.__class__.__name__}: {exc}\n{traceback.format_exc(limit=4)}", False))
    finally:
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group is torn down with the process
            pass

