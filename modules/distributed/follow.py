"""Following a call running on a Ray actor: wait for its answer, pass the job's cancel and interrupt (and skip,
for generations) on to that actor only, copy its progress here, and turn Ray's failures into the studio's.

Shared by the generation dispatch (:mod:`.dispatch`) and training on actors (:mod:`.training`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from modules.distributed.pool import ActorSlot
    from modules.jobs.progress import JobControl

#: how often the studio polls a running actor for its progress (seconds)
POLL_SECONDS = 0.2
#: how long one call to an actor may take before it counts as busy (seconds)
CALL_TIMEOUT = 10.0


def short(exc: BaseException) -> str:
    """The last line of an error Ray relayed (its reason, without the remote traceback)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def follow_call(ray: Any, slot: "ActorSlot", job_id: str, pending: Any, control: "JobControl",
                on_progress: Callable[[dict[str, Any]], None], *, died: type[Exception],
                pass_skip: bool = False) -> Any:
    """The answer of ``pending`` (a call on ``slot``'s actor for job ``job_id``). Raises ``died`` with the reason
    when the actor is lost, RuntimeError when the call failed on the actor."""
    exceptions = ray.exceptions
    sent: set[str] = set()
    while True:
        try:
            ready, _ = ray.wait([pending], timeout=POLL_SECONDS)
            if ready:
                return ray.get(ready[0])
            for how, event in (("cancel", control.cancel_event), ("interrupt", control.interrupt_event)):
                if event.is_set() and how not in sent:
                    slot.handle.stop.remote(job_id, how)
                    sent.add(how)
            if pass_skip and control.skip_event.is_set():
                control.skip_event.clear()
                slot.handle.stop.remote(job_id, "skip")
            progress = ray.get(slot.handle.progress.remote(job_id), timeout=CALL_TIMEOUT)
            if progress is not None:
                on_progress(progress)
        except exceptions.GetTimeoutError:
            continue
        except exceptions.RayActorError as exc:
            raise died(short(exc)) from None
        except exceptions.RayTaskError as exc:  # a bug on the actor: the job fails with its reason
            raise RuntimeError(f"on Ray actor {slot.name}: {short(exc)}") from None
