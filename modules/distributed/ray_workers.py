"""Starting Ray and the studio's actors (imported only with ``--ray``: this is where Ray is imported).

``--ray auto`` joins the Ray cluster ``RAY_ADDRESS`` names or the one ``ray start`` started on this machine,
else starts a local one of its own (its dashboard off, its ports on this machine only; never a Ray that another
program's ``ray.init`` started); ``--ray ADDRESS`` joins that cluster. One actor per GPU (``num_gpus=1``), or ``--ray-cpu-actors N`` single-threaded CPU actors.

Local ports: a Ray node's gRPC servers (GCS, raylet's node and object managers, every worker's core
worker, the runtime-env agent) listen on 127.0.0.1 only when the node's IP is 127.0.0.1, else on every
interface. ``ray.init(_node_ip_address="127.0.0.1")`` is not enough: Ray replaces a loopback address by the
machine's own IP, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the environment when Ray is imported
(Ray's switch for single-machine use, the default on macOS and Windows). So ``--ray auto`` puts that
variable in the environment before importing Ray (:func:`prepare_local_ray`); the processes Ray starts
inherit it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.distributed.errors import RayStartError
from modules.distributed.follow import short

if TYPE_CHECKING:
    from modules.app_context import AppContext

log = logging.getLogger(__name__)

#: seconds to wait for the actors to build their studios (each imports torch and diffusers)
ACTOR_START_TIMEOUT = 300.0
#: Ray's switch that keeps a node on 127.0.0.1 (read once, when Ray is imported)
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass
class Started:
    ray: Any                 # the ray module
    actors: list[tuple[str, Any, str]]  # (name, handle, resources in words)
    owns_ray: bool           # this studio started the local Ray (and shuts it down)


def worker_argv(ctx: "AppContext", cpu: bool) -> list[str]:
    """The flags an actor builds its studio from: the same data dir path (every node reads it) and the
    model and memory flags."""
    flags, paths = ctx.flags, ctx.paths
    argv = ["--data-dir", str(paths.data_dir)]
    if flags.ckpt_dir is not None:
        argv += ["--ckpt-dir", str(flags.ckpt_dir.resolve())]
    if flags.lora_dir is not None:
        argv += ["--lora-dir", str(flags.lora_dir.resolve())]
    for folder in flags.allowed_dirs:  # training datasets and batch folders outside the data dir
        argv += ["--allowed-dir", str(folder)]
    for name in ("no_half", "lowvram", "medvram", "allow_pickle", "offline"):
        if getattr(flags, name):
            argv.append("--" + name.replace("_", "-"))
    if flags.backend:
        argv += ["--backend", flags.backend]
    if flags.model_memory_mb:
        argv += ["--model-memory-mb", str(flags.model_memory_mb)]
    if cpu:
        argv += ["--use-cpu", "all"]
    elif flags.use_cpu:
        argv += ["--use-cpu", *flags.use_cpu]
    return argv


def _init(ray: Any, address: str, cpu_actors: int | None) -> bool:
    """Join or start Ray; True when this process started it."""
    repo = str(ctx_repo_root())
    runtime_env = {"env_vars": {"PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}}
    common = {"runtime_env": runtime_env, "log_to_driver": False, "ignore_reinit_error": True}
    if address != "auto":
        _reachable(address)  # Ray itself retries an unreachable address for minutes
        ray.init(address=address, **common)
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**common)
        return False
    started = _started_here()
    if started is not None:  # the cluster `ray start` last started on this machine, when it answers
        ray.init(address=started, **common)
        return False
    # else a Ray of our own: never one that another program's ray.init started here (Ray's own "auto" would
    # join any running one, and it dies with that program)
    local: dict[str, Any] = {"address": "local", "include_dashboard": False}
    if cpu_actors:
        local["num_cpus"] = max(cpu_actors, 1)
    if not local_only(ray):
        log.warning("Ray was imported before the studio could keep it on 127.0.0.1 (set %s=0 in the environment): "
                    "the local Ray's ports listen on every interface", LOCAL_ONLY_ENV)
    ray.init(**local, **common)
    return True


def _started_here() -> str | None:
    """The address of the cluster ``ray start`` last started on this machine (Ray records it in
    ``<Ray's temp dir>/ray_current_cluster``), if it answers; else None."""
    import tempfile

    record = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        address = record.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not address:
        return None
    try:
        _reachable(address, timeout=2.0)
    except RayStartError:
        return None  # left behind by a Ray that has stopped
    return address


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Raise :class:`RayStartError` when nothing answers at ``address`` (``host:port`` or ``ray://host:port``)."""
    import socket

    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RayStartError(f"--ray {address!r}: expected host:port (the head's GCS, e.g. HEAD:6379) or "
                            "ray://host:10001, or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayStartError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); is it started "
                            "(ray start --head, ray up) and is that port open to this machine?") from None


def ctx_repo_root() -> Any:
    from modules.paths import REPO_ROOT

    return REPO_ROOT


def prepare_local_ray(address: str) -> None:
    """Before Ray is imported: with ``--ray auto`` (and no ``RAY_ADDRESS``), keep a Ray this studio starts on
    127.0.0.1 (see the module docstring). The user's own value of the variable is kept."""
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")


def local_only(ray: Any) -> bool:
    """Whether a Ray started from this process keeps its ports on 127.0.0.1."""
    return not ray._private.ray_constants.ENABLE_RAY_CLUSTER


def start_actors(ctx: "AppContext") -> Started:
    """Ray and the actors, each with its studio built (raises :class:`RayStartError` saying why not)."""
    prepare_local_ray(ctx.flags.ray or "auto")
    try:
        import ray
    except ImportError:
        raise RayStartError("--ray needs Ray: pip install -r requirements-ray.txt") from None
    from modules.distributed.worker import StudioWorker

    flags = ctx.flags
    address = flags.ray or "auto"
    try:
        owns = _init(ray, address, flags.ray_cpu_actors)
    except RayStartError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray says why in its own words
        raise RayStartError(f"could not join or start Ray at {address!r}: {exc}") from None
    Actor = ray.remote(StudioWorker)
    actors: list[tuple[str, Any, str]] = []
    if flags.ray_cpu_actors:
        argv = worker_argv(ctx, cpu=True)
        for index in range(flags.ray_cpu_actors):
            name = f"cpu-{index}"
            handle = Actor.options(num_cpus=1, num_gpus=0, max_concurrency=4, max_restarts=0).remote(name, argv, 1)
            actors.append((name, handle, "1 CPU"))
    else:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < 1:
            raise RayStartError("the Ray cluster has no GPU: add GPU nodes, or use --ray-cpu-actors N for CPU actors")
        argv = worker_argv(ctx, cpu=False)
        for index in range(gpus):
            name = f"gpu-{index}"
            handle = Actor.options(num_cpus=1, num_gpus=1, max_concurrency=4, max_restarts=0).remote(name, argv)
            actors.append((name, handle, "1 GPU"))
    try:
        ray.get([handle.state.remote() for _, handle, _ in actors], timeout=ACTOR_START_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        for _, handle, _ in actors:
            ray.kill(handle)
        if owns:
            ray.shutdown()
        raise RayStartError(f"the Ray actors did not start: {short(exc)}") from None
    log.info("Ray: %d actors ready (%s)", len(actors), ", ".join(name for name, _, _ in actors))
    return Started(ray=ray, actors=actors, owns_ray=owns)
