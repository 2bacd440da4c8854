"""What the studio says about its Ray actors (``GET /api/v1/cluster``, ``/sdapi/v1/memory`` and the UI's
line): no Ray import, and nothing to say without ``--ray``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modules.app_context import AppContext


def cluster_view(ctx: "AppContext") -> dict[str, Any]:
    """``{"enabled", "address", "actors": [{name, alive, device, checkpoint, loaded, job, jobs, loads, ...}],
    "retried"}``."""
    cluster = ctx.cluster
    if cluster is None:
        return {"enabled": False, "address": None, "actors": [], "retried": 0}
    return {"enabled": True, "address": ctx.flags.ray, "actors": cluster.state(), "retried": cluster.retried}


def cluster_line(ctx: "AppContext") -> str:
    """One line for people: each actor's device, model and job (empty without ``--ray``)."""
    view = cluster_view(ctx)
    if not view["enabled"]:
        return ""
    parts = []
    for actor in view["actors"]:
        if not actor.get("alive"):
            parts.append(f"{actor['name']}: dead ({actor.get('error') or 'no reason'})")
            continue
        job = f"job {str(actor['job'])[:8]}" if actor.get("job") else "idle"
        parts.append(f"{actor['name']} [{actor.get('device', '?')}]: {actor.get('checkpoint') or 'no model'}, {job}")
    return f"Ray ({len(view['actors'])} actors): " + "; ".join(parts)
