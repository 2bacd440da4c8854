"""``/api/v1/extra-networks``: the extra networks browser's cards for API clients (the web UI calls
:mod:`modules.models.extra_networks` directly).

* ``GET /api/v1/extra-networks?kind=lora&search=&folder=&sort=name&descending=false``: the cards, the
  sub-folders, each card's prompt (and negative prompt) text and user metadata (A1111's keys);
* ``GET /api/v1/extra-networks/item?kind=lora&id=sub/x.safetensors``: one card with its training metadata;
* ``GET /api/v1/extra-networks/preview?kind=lora&id=...``: its picture (a small JPEG/PNG), 404 when none;
* ``PUT /api/v1/extra-networks/metadata?kind=lora&id=...``: save its ``<name>.json`` (A1111's keys).

A card is named by kind and id as listed; nothing else is opened (a preview is an image beside a listed
model or an output image). Behind the API's auth like every route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from modules.api.errors import ApiError, error_responses
from modules.models.extra_networks import Card, ExtraNetworkError, ExtraNetworks
from modules.models.network_metadata import MetadataError, UserMetadata

if TYPE_CHECKING:
    from modules.app_context import AppContext

KindParam = Literal["lora", "embedding", "checkpoint", "vae"]
SortParam = Literal["name", "date", "size"]
IMAGE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the card's picture"}}


class CardView(BaseModel):
    kind: str
    id: str
    name: str
    alias: str
    folder: str
    path: str
    size: int
    mtime: float
    prompt: str
    negative_prompt: str
    preview: Literal["file", "output"] | None
    preview_url: str | None
    metadata: dict[str, Any]
    metadata_note: str


class CardList(BaseModel):
    kind: str
    folders: list[str]
    items: list[CardView]


class CardDetail(CardView):
    training_metadata: dict[str, str]


def _view(ctx: "AppContext", networks: ExtraNetworks, card: Card) -> CardView:
    from urllib.parse import urlencode

    metadata, note = networks.user_metadata(card)
    _, source = networks.preview(card)
    url = "/api/v1/extra-networks/preview?" + urlencode({"kind": card.kind, "id": card.id}) if source else None
    return CardView(kind=card.kind, id=card.id, name=card.name, alias=card.alias, folder=card.folder,
                    path=ctx.paths.shown(card.path), size=card.size, mtime=card.mtime,
                    prompt=networks.prompt_text(card, metadata),
                    negative_prompt=networks.negative_text(card, metadata), preview=source or None, preview_url=url,
                    metadata=metadata.as_file(), metadata_note=note)


def build_extra_networks_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/api/v1/extra-networks", tags=["Extra networks"])
    networks = ExtraNetworks(ctx.paths, ctx.catalog)

    def find(kind: str, card_id: str) -> Card:
        try:
            return networks.find(kind, card_id)
        except ExtraNetworkError as exc:
            raise ApiError(404, str(exc), "NotFound") from None

    @router.get("", response_model=CardList, responses=error_responses(422))
    def list_cards(kind: KindParam = Query(...), search: str = Query("", max_length=500),
                   folder: str = Query("", max_length=1000), sort: SortParam = "name",
                   descending: bool = False) -> CardList:
        cards = networks.cards(kind, search=search, folder=folder, sort=sort, descending=descending)
        return CardList(kind=kind, folders=networks.folders(kind), items=[_view(ctx, networks, c) for c in cards])

    @router.get("/item", response_model=CardDetail, responses=error_responses(404, 422))
    def item(kind: KindParam = Query(...), id: str = Query(..., max_length=1000)) -> CardDetail:  # noqa: A002
        card = find(kind, id)
        return CardDetail(**_view(ctx, networks, card).model_dump(), training_metadata=networks.training_metadata(card))

    @router.get("/preview", response_class=FileResponse, responses={**IMAGE_RESPONSE, **error_responses(404, 422)})
    def preview(kind: KindParam = Query(...), id: str = Query(..., max_length=1000)) -> FileResponse:  # noqa: A002
        card = find(kind, id)
        path = networks.thumbnail(card)
        if path is None:
            raise ApiError(404, f"{card.id} has no picture (no preview file beside it, no image made with it)",
                           "NotFound")
        media = {".png": "image/png", ".webp": "image/webp"}.get(path.suffix.lower(), "image/jpeg")
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    @router.put("/metadata", response_model=CardDetail, responses=error_responses(404, 422, 500))
    def save_metadata(kind: KindParam = Query(...), id: str = Query(..., max_length=1000),  # noqa: A002
                      metadata: UserMetadata = Body(...)) -> CardDetail:
        card = find(kind, id)
        try:
            networks.save_user_metadata(card, metadata)
        except MetadataError as exc:
            raise ApiError(500, str(exc), "MetadataNotSaved") from None
        return item(kind, id)

    return router
