"""Named model slots under one memory budget (issue 24, point 3): sizes, eviction order, the manager on slots,
and two queue lanes loading into the one budget.

The "models" are tiny torch modules whose size is known to the byte (float32 parameters and buffers), so
the budget arithmetic is checked exactly; the ModelManager test loads fake checkpoints (a subclass whose
loader builds such modules) so no real weights are needed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
import pytest
import torch
from pydantic import BaseModel

from modules.jobs.kinds import JobKind, JobKindRegistry
from modules.jobs.model import Job, JobState
from modules.jobs.progress import JobControl
from modules.jobs.queue import JobQueue
from modules.models.catalog import CheckpointCatalog, CheckpointInfo
from modules.models.errors import ModelLoadError
from modules.models.hashing import HashCache
from modules.models.manager import CHECKPOINT_SLOT, REFINER_SLOT, ActiveModel, ModelManager
from modules.models.slots import DEFAULT_CPU_SHARE, ModelSlots, device_total_bytes, measure_bytes


class Blob(torch.nn.Module):
    """A module of exactly ``params + buffers`` float32 values (4 bytes each)."""

    def __init__(self, params: int, buffers: int = 0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(params))
        self.register_buffer("stats", torch.zeros(buffers))


def blob(nbytes: int) -> Blob:
    assert nbytes % 4 == 0
    return Blob(nbytes // 4)


class FakePipeline:
    """Stands for a diffusers pipeline: its modules are in ``components``."""

    def __init__(self, **components: Any) -> None:
        self.components = dict(components)

    def set_progress_bar_config(self, **_: Any) -> None:
        pass


@dataclass(frozen=True)
class FakeFamily:
    label: str = "fake"


@dataclass
class FakeLoaded:
    """Stands for ``LoadedModel``: the pipeline plus facts (strings, sizes) that weigh nothing."""

    name: str
    pipeline: FakePipeline
    native_size: tuple[int, int] = (64, 64)
    family: FakeFamily = FakeFamily()


# -- measuring ------------------------------------------------------------------------------------
def test_measure_counts_parameters_and_buffers_once() -> None:
    assert measure_bytes(Blob(100, 25)) == 500
    shared = blob(400)
    pipeline = FakePipeline(unet=Blob(10, 5), text_encoder=shared, tokenizer="not a module", also=shared)
    assert measure_bytes(pipeline) == 60 + 400  # the shared module counts once, the tokenizer nothing
    tied = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert measure_bytes(tied) == 16 * 4
    loaded = FakeLoaded("x", pipeline)
    assert measure_bytes(loaded) == 460
    assert measure_bytes({"a": blob(8), "b": [blob(12), torch.zeros(2, dtype=torch.float64)]}) == 8 + 12 + 16
    assert measure_bytes("text") == 0 and measure_bytes(None) == 0


# -- the budget and eviction ----------------------------------------------------------------------
def test_least_recently_used_other_slots_are_evicted_to_stay_under_the_budget() -> None:
    slots = ModelSlots(budget=3000)
    assert slots.put("a", blob(1000)) == []
    assert slots.put("b", blob(1000)) == []
    assert slots.put("c", blob(1000)) == []
    assert slots.used == 3000 and slots.names() == ["a", "b", "c"]
    assert slots.slot("a") is not None  # a use: "a" is now the most recent
    assert slots.peek("b") is not None  # a look (the API, the UI) is not a use
    assert slots.put("d", blob(1000)) == ["b"]
    assert slots.names() == ["c", "a", "d"] and slots.used == 3000
    assert slots.put("e", blob(2000)) == ["c", "a"]  # oldest first, only as many as needed
    assert slots.names() == ["d", "e"] and slots.used == 3000
    assert slots.slot("b") is None and "b" not in slots


def test_replacing_a_slot_does_not_count_what_it_replaces() -> None:
    slots = ModelSlots(budget=3000)
    slots.put("checkpoint", blob(2000))
    slots.put("controlnet", blob(1000))
    assert slots.put("checkpoint", blob(2000)) == []  # the old checkpoint goes, the ControlNet stays
    assert slots.used == 3000 and slots.names() == ["controlnet", "checkpoint"]


def test_a_thing_bigger_than_the_budget_is_held_alone_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    slots = ModelSlots(budget=1000)
    slots.put("small", blob(400))
    caplog.set_level(logging.WARNING, logger="modules.models.slots")
    assert slots.put("huge", blob(2000)) == ["small"]
    assert slots.names() == ["huge"] and any("more than the whole budget" in r.getMessage() for r in caplog.records)


def test_make_room_before_a_load_keeps_the_slot_being_loaded() -> None:
    slots = ModelSlots(budget=3000)
    for name in ("checkpoint", "refiner", "controlnet"):
        slots.put(name, blob(1000))
    slots.slot("checkpoint")
    # loading a 2000-byte checkpoint: the old one stays until the new one replaces it (a failed load keeps it)
    assert slots.make_room("checkpoint", 2000) == ["refiner"]
    assert slots.names() == ["controlnet", "checkpoint"]
    assert slots.evict("controlnet") and not slots.evict("controlnet")


def test_the_budget_is_read_live_and_defaults_to_the_devices_memory() -> None:
    setting = {"mb": 0}
    slots = ModelSlots(budget=lambda: setting["mb"] * 1000 or None)
    device, total = device_total_bytes()
    if device == "cpu":
        assert slots.budget == int(psutil.virtual_memory().total * DEFAULT_CPU_SHARE)
    assert 0 < slots.budget <= total
    setting["mb"] = 3
    slots.put("a", blob(2000))
    slots.put("b", blob(2000))
    assert slots.names() == ["b"]
    report = slots.report().as_dict()
    assert report["budget"] == 3000 and report["used"] == 2000
    assert [(s["name"], s["bytes"]) for s in report["slots"]] == [("b", 2000)]


# -- the ModelManager on slots --------------------------------------------------------------------
class FakeModelManager(ModelManager):
    """Loads "checkpoints" whose size is their file's first line (bytes), as tiny modules."""

    loads: list[str]

    def _load_detached(self, info: CheckpointInfo, slot: str) -> ActiveModel:
        if info.path.read_text().startswith("broken"):
            raise ModelLoadError(info.name, "cannot read it")
        self.loads.append(info.path.stem)
        size = int(info.path.read_text().split()[0])
        self.slots.make_room(slot, size)
        loaded = FakeLoaded(info.name, FakePipeline(unet=blob(size)))
        return ActiveModel(info=info, model=loaded, sha256=None, load_seconds=0.0)  # type: ignore[arg-type]


@pytest.fixture
def manager(tmp_path: Path) -> FakeModelManager:
    folder = tmp_path / "Stable-diffusion"
    folder.mkdir()
    for name, size in (("base", 2000), ("other", 2000), ("refiner", 1000)):
        (folder / f"{name}.safetensors").write_text(f"{size}\n")
    (folder / "broken.safetensors").write_text("broken\n")
    hashes = HashCache(tmp_path / "hashes.json")
    manager = FakeModelManager(CheckpointCatalog([folder], hashes), hashes, lambda: None,  # type: ignore[arg-type]
                               slots=ModelSlots(budget=4000))
    manager.loads = []
    return manager


def test_the_checkpoint_and_refiner_live_in_slots_under_the_budget(manager: FakeModelManager) -> None:
    base = manager.ensure_loaded("base")
    assert manager.active is base and manager.ensure_loaded(None) is base and manager.ensure_loaded("base") is base
    refiner = manager.ensure_refiner("refiner")
    assert manager.ensure_refiner("refiner") is refiner and manager.loads == ["base", "refiner"]
    assert manager.slots.report().used == 3000
    assert {s.name: s.bytes for s in manager.slots.report().slots} == {CHECKPOINT_SLOT: 2000, REFINER_SLOT: 1000}
    # a ControlNet that needs room: the least recently used slot (the refiner) goes, not the checkpoint in use
    manager.ensure_loaded(None)
    assert manager.slots.put("controlnet:canny", blob(2000)) == [REFINER_SLOT]
    assert manager.active is base


def test_an_evicted_checkpoint_is_loaded_again_by_the_next_job(manager: FakeModelManager) -> None:
    manager.ensure_loaded("base")
    manager.slots.put("controlnet:canny", blob(1000))
    manager.slots.slot("controlnet:canny")
    assert manager.slots.put("classifier", blob(3600)) == [CHECKPOINT_SLOT, "controlnet:canny"]
    assert manager.active is None
    again = manager.ensure_loaded(None)  # the job names no checkpoint: the last one comes back
    assert again.info.name == "base.safetensors" and manager.loads == ["base", "base"]
    assert manager.slots.names() == [CHECKPOINT_SLOT]  # the classifier made room for it


def test_a_failed_load_keeps_the_previous_checkpoint(manager: FakeModelManager) -> None:
    base = manager.ensure_loaded("base")
    with pytest.raises(ModelLoadError):
        manager.ensure_loaded("broken")
    assert manager.active is base
    manager.unload()
    assert manager.active is None and manager.slots.names() == []
    with pytest.raises(ModelLoadError, match="no checkpoint is loaded"):
        manager.ensure_loaded(None)


# -- two lanes, one budget ------------------------------------------------------------------------
class Load(BaseModel):
    kind: Literal["load_dev"] = "load_dev"
    slot: str = "checkpoint"
    nbytes: int = 0


class LoadTraining(BaseModel):
    kind: Literal["load_train"] = "load_train"
    slot: str = "training:unet"
    nbytes: int = 0


def test_both_lanes_load_into_one_budget() -> None:
    slots = ModelSlots(budget=3000)
    training_loaded, release = threading.Event(), threading.Event()

    def device_job(ctx: Any, job: Job, control: JobControl) -> list[str]:
        return slots.put(job.request.slot, blob(job.request.nbytes))

    def training_job(ctx: Any, job: Job, control: JobControl) -> list[str]:
        evicted = slots.put(job.request.slot, blob(job.request.nbytes))
        training_loaded.set()
        release.wait(10)
        return evicted

    kinds = JobKindRegistry([JobKind(name="load_dev", request=Load, run=device_job),
                             JobKind(name="load_train", request=LoadTraining, run=training_job, lane="training")])
    queue = JobQueue({}, lanes=kinds.lane_of)
    queue.attach_handlers(kinds.handlers(None))  # type: ignore[arg-type]
    queue.start()
    try:
        train = queue.submit(LoadTraining(nbytes=2000))
        assert training_loaded.wait(10)
        first = queue.submit(Load(slot="controlnet", nbytes=1000))
        assert queue.wait(first.id, timeout=10).result == []  # 2000 + 1000 fit
        second = queue.submit(Load(slot="checkpoint", nbytes=2000))
        # the device lane's load evicts the least recently used slot, the training lane's, to stay in budget
        assert queue.wait(second.id, timeout=10).result == ["training:unet"]
        assert train.state is JobState.RUNNING and slots.used == 3000 and slots.names() == ["controlnet", "checkpoint"]
        release.set()
        assert queue.wait(train.id, timeout=10).state is JobState.SUCCEEDED
    finally:
        release.set()
        queue.shutdown()


def test_the_memory_route_shows_the_loaded_slots_and_the_budget(manager: FakeModelManager) -> None:
    from types import SimpleNamespace

    from fastapi import APIRouter, FastAPI
    from fastapi.testclient import TestClient

    from modules.api.sdapi_listings import add_listing_routes

    manager.ensure_loaded("base")
    manager.slots.put("controlnet:canny", blob(1000))
    router = APIRouter()
    from modules.flags import parse_flags
    from modules.settings import Settings

    studio = SimpleNamespace(models=manager, flags=parse_flags([]), settings=SimpleNamespace(current=Settings()))
    add_listing_routes(router, studio)  # type: ignore[arg-type] - the route reads models, flags and settings
    app = FastAPI()
    app.include_router(router, prefix="/sdapi/v1")
    body = TestClient(app).get("/sdapi/v1/memory").json()
    assert "ram" in body and "cuda" in body  # A1111's fields are unchanged
    assert body["device"] and body["memory_mode"]  # torch is loaded here: the device and memory mode in force
    assert body["models"]["budget"] == 4000 and body["models"]["used"] == 3000
    assert [(s["name"], s["bytes"]) for s in body["models"]["slots"]] == [(CHECKPOINT_SLOT, 2000),
                                                                          ("controlnet:canny", 1000)]


# -- ControlNets and the classifier on slots ------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONTROLNET = REPO / "models" / "ControlNet"
SHIPPED_CLASSIFIER = REPO / "models" / "classifier" / "atelier-shapes-vit"


def test_controlnets_are_held_in_slots_and_count_against_the_budget() -> None:
    import json

    from modules.generation.controlnet.models import ControlNetCache, ControlNetLibrary

    if not (SHIPPED_CONTROLNET / "atelier-shapes-canny-v1.safetensors").is_file():
        pytest.skip("the shipped canny ControlNet is not in models/ControlNet")
    entry = ControlNetLibrary((SHIPPED_CONTROLNET,)).find("atelier-shapes-canny-v1")
    unet_config = json.loads((SHIPPED_CONTROLNET / "atelier-shapes-canny-v1.json").read_text())  # same widths
    slots = ModelSlots(budget=10**9)
    cache = ControlNetCache(slots=slots)
    model = cache.get(entry, unet_config, "SD 1.x", dtype=torch.float32, device="cpu")
    [name] = slots.names()
    assert name.startswith("controlnet:atelier-shapes-canny-v1#")
    assert slots.report().used == measure_bytes(model) > 0
    assert cache.get(entry, unet_config, "SD 1.x", dtype=torch.float32, device="cpu") is model  # kept
    slots.put("checkpoint", blob(4))
    slots.evict(name)  # evicted for room: the next use loads it again, into its slot
    again = cache.get(entry, unet_config, "SD 1.x", dtype=torch.float32, device="cpu")
    assert again is not model and name in slots


def test_the_interrogation_classifier_is_held_in_its_slot() -> None:
    from PIL import Image

    from modules.understanding.interrogate import CLASSIFIER_SLOT, Interrogator

    if not (SHIPPED_CLASSIFIER / "config.json").is_file():
        pytest.skip("the shipped classifier is not in models/classifier")
    slots = ModelSlots(budget=10**9)
    interrogator = Interrogator([SHIPPED_CLASSIFIER], slots=slots)
    picture = Image.new("RGB", (64, 64), "blue")
    first = interrogator.predict(picture)
    assert slots.names() == [CLASSIFIER_SLOT] and slots.report().used > 0
    held = slots.peek(CLASSIFIER_SLOT)
    assert interrogator.predict(picture) == first and slots.peek(CLASSIFIER_SLOT) is held  # loaded once
    slots.evict(CLASSIFIER_SLOT)
    assert interrogator.predict(picture) == first and slots.peek(CLASSIFIER_SLOT) is not held
