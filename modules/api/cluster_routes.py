"""``GET /api/v1/cluster``: the studio's Ray actors (``--ray``): each one's device, loaded models, current
job and counters; ``enabled: false`` without ``--ray``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from modules.distributed.status import cluster_view

if TYPE_CHECKING:
    from modules.app_context import AppContext


class ClusterView(BaseModel):
    enabled: bool = Field(..., description="the studio runs with --ray")
    address: str | None = Field(None, description="the --ray value: auto or the cluster's address")
    actors: list[dict[str, Any]] = Field(default_factory=list, description=(
        "each actor: name, resources, alive, device, node, checkpoint (loaded), loaded (model slots), job (running "
        "now), jobs (run for this studio), loads (model loads), error (why it is dead or did not answer)"))
    retried: int = Field(0, description="jobs run again on another actor after theirs died")


def build_cluster_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["Cluster"])

    @router.get("/cluster", response_model=ClusterView)
    def cluster() -> dict[str, Any]:
        return cluster_view(ctx)

    return router
