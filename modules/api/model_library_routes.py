"""``/api/v1/models``: the model library for API clients (every kind; the web UI calls
:mod:`modules.models.library` directly).

* ``GET /api/v1/models?kind=lora&search=``: the files (and model folders) of a kind with size, family and the
  hashes known so far;
* ``GET /api/v1/models/item?kind=lora&id=sub/x.safetensors``: one entry with its safetensors metadata (kohya
  ``ss_*`` fields), trigger words, the user's notes and its preview;
* ``POST /api/v1/models/rename`` ``{"kind", "id", "new_name"}`` and ``POST /api/v1/models/delete``
  ``{"kind", "id"}`` (to ``<data>/trash/models``);
* ``GET /api/v1/models/hashing`` (progress) and ``POST /api/v1/models/hashing`` (hash every file not hashed
  yet, in the background);
* ``GET /api/v1/models/known``: the catalogue of known-good models (nothing is downloaded: submit a
  ``download_model`` job to the job API with the fields it gives).

Downloads, merges and conversions are job kinds (``download_model``, ``merge_models``, ``convert_model``,
``convert_lora``) on ``/api/v1/jobs``. Entries are named by kind and id as listed; nothing else is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from modules.api.errors import ApiError, error_responses
from modules.models.library import Entry, LibraryError, ModelLibrary

if TYPE_CHECKING:
    from modules.app_context import AppContext

KindParam = Literal["checkpoint", "lora", "embedding", "vae", "controlnet", "upscaler", "text_encoder", "vlm",
                    "classifier"]


class ModelEntryView(BaseModel):
    kind: str
    id: str
    name: str
    is_folder: bool
    path: str
    size: int
    mtime: float
    family: str
    sha256: str | None = Field(None, description="known once hashed (background hashing fills it in)")
    autov2: str | None = Field(None, description="A1111's short hash: the first 10 hex of sha256")
    addnet: str | None = Field(None, description="LoRA: kohya's addnet hash (first 12 hex, A1111's Lora hashes)")


class ModelList(BaseModel):
    kind: str
    items: list[ModelEntryView]


class ModelDetail(ModelEntryView):
    size_text: str
    training: dict[str, str] = Field(default_factory=dict, description="kohya ss_* fields of the header")
    metadata: dict[str, str] = Field(default_factory=dict, description="the header's other metadata")
    trigger_words: list[str] = Field(default_factory=list, description="most frequent training tags")
    user_metadata: dict[str, Any] = Field(default_factory=dict, description="<name>.json (A1111's keys)")
    user_metadata_note: str = ""
    preview: str | None = Field(None, description="the picture: <name>.preview.png beside it, or the first output "
                                "image made with it")
    preview_source: Literal["file", "output"] | None = None
    loaded: bool = False


class EntryRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: KindParam
    id: str = Field(..., max_length=1000)


class RenameBody(EntryRef):
    new_name: str = Field(..., max_length=200, description="the new name, without folder; the extension is kept")


class DeleteAnswer(BaseModel):
    kind: str
    id: str
    trash: str = Field(..., description="where the file went (under <data>/trash/models)")


class HashingView(BaseModel):
    running: bool
    done: int
    total: int
    current: str
    computed: int
    errors: list[str]
    started_at: float | None
    finished_at: float | None


class HashingStarted(HashingView):
    started: bool = Field(..., description="false when a run was going on already")


class HfTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(..., description="the token; empty forgets the saved one (then HF_TOKEN is used)")


class HfTokenView(BaseModel):
    source: Literal["settings", "environment"] | None = Field(
        None, description="settings: the saved token; environment: HF_TOKEN; null: none")
    note: str


def _view(lib: ModelLibrary, entry: Entry) -> dict[str, Any]:
    return {"kind": entry.kind, "id": entry.id, "name": entry.name, "is_folder": entry.is_folder,
            "path": lib.paths.shown(entry.path), "size": entry.size, "mtime": entry.mtime,
            "family": lib.family(entry), **lib.cached_hashes(entry)}


def build_model_library_router(ctx: "AppContext") -> APIRouter:
    router = APIRouter(prefix="/api/v1/models", tags=["Models"])
    lib = ctx.library if ctx.library is not None else ModelLibrary(ctx.paths, ctx.catalog, ctx.hashes)

    def entry(kind: str, entry_id: str) -> Entry:
        try:
            return lib.find(kind, entry_id)
        except LibraryError as exc:
            raise ApiError(404, str(exc), "NotFound") from None

    @router.get("", response_model=ModelList, responses=error_responses(422))
    def list_models(kind: KindParam = Query(...), search: str = Query("", max_length=500)) -> ModelList:
        return ModelList(kind=kind, items=[ModelEntryView(**_view(lib, e)) for e in lib.entries(kind, search)])

    @router.get("/item", response_model=ModelDetail, responses=error_responses(404, 422))
    def item(kind: KindParam = Query(...), id: str = Query(..., max_length=1000)) -> ModelDetail:  # noqa: A002
        return ModelDetail(**lib.details(entry(kind, id)))

    @router.post("/rename", response_model=ModelEntryView, responses=error_responses(400, 404, 422))
    def rename(body: RenameBody) -> ModelEntryView:
        entry(body.kind, body.id)
        try:
            renamed = lib.rename(body.kind, body.id, body.new_name)
        except LibraryError as exc:
            raise ApiError(400, str(exc), "NotRenamed") from None
        except OSError as exc:
            raise ApiError(400, f"could not rename {body.id}: {exc.strerror or exc}", "NotRenamed") from None
        return ModelEntryView(**_view(lib, renamed))

    @router.post("/delete", response_model=DeleteAnswer, responses=error_responses(400, 404, 422))
    def delete(body: EntryRef) -> DeleteAnswer:
        entry(body.kind, body.id)
        try:
            moved = lib.delete(body.kind, body.id)
        except LibraryError as exc:
            raise ApiError(400, str(exc), "NotDeleted") from None
        except OSError as exc:
            raise ApiError(400, f"could not move {body.id} to the trash: {exc.strerror or exc}", "NotDeleted") from None
        return DeleteAnswer(kind=body.kind, id=body.id, trash=ctx.paths.shown(moved))

    @router.get("/hashing", response_model=HashingView, responses=error_responses(503))
    def hashing() -> HashingView:
        if ctx.hashing is None:
            raise ApiError(503, "background hashing is not available", "Unavailable")
        return HashingView(**ctx.hashing.progress().as_dict())

    @router.post("/hashing", response_model=HashingStarted, responses=error_responses(503))
    def start_hashing() -> HashingStarted:
        if ctx.hashing is None:
            raise ApiError(503, "background hashing is not available", "Unavailable")
        started = ctx.hashing.start()
        return HashingStarted(started=started, **ctx.hashing.progress().as_dict())

    @router.get("/known", response_model=dict[str, Any])
    def known() -> dict[str, Any]:
        """The catalogue; each file's ``download`` holds the ``download_model`` request fields that fetch it."""
        from modules.models.known_models import known_catalogue

        catalogue = known_catalogue()
        models = []
        for model in catalogue.models:
            data = model.model_dump()
            for file, raw in zip(model.files, data["files"]):
                raw["download"] = {"kind": "download_model", **file.download_fields()}
            models.append(data)
        return {"about": catalogue.about, "models": models}

    @router.get("/hf-token", response_model=HfTokenView)
    def hf_token() -> HfTokenView:
        """Where the Hugging Face token of downloads comes from (never the token itself)."""
        from modules.models.hf_download import token_state

        state = token_state(ctx.paths)
        return HfTokenView(source=state.source, note=state.describe())

    @router.post("/hf-token", response_model=HfTokenView, responses=error_responses(400, 422))
    def set_hf_token(body: HfTokenBody) -> HfTokenView:
        """Save the Hugging Face token as the Settings page does (an empty one forgets it); never echoed."""
        from modules.models.download import DownloadError
        from modules.models.hf_download import save_token

        try:
            state = save_token(ctx.paths, body.token)
        except DownloadError as exc:
            raise ApiError(400, str(exc), "NotSaved") from None
        return HfTokenView(source=state.source, note=state.describe())

    return router

