"""The model library (issue 28.1-2): every kind listed with family, size and hashes, metadata and trigger
words, search, rename and delete to the trash with the hardening rules (listed files only, no separators,
no links out of the folder, not the loaded checkpoint); background hashing (AutoV2 and the addnet hash
against hashlib) filling in /sdapi/v1/sd-models; the /api/v1/models routes; the known-models catalogue."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from modules.models.catalog import CheckpointCatalog
from modules.models.hash_worker import HashWorker, library_targets
from modules.models.hashing import HashCache
from modules.models.library import LibraryError, ModelLibrary, trigger_words
from modules.paths import Paths, resolve_paths

TAGS = json.dumps({"10_toon": {"toon": 12, "red hair": 5, "smile": 9}, "2_bg": {"toon": 1, "forest": 2}})


def _safetensors(path: Path, metadata: dict[str, str] | None = None, n: int = 8) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_x.lora_down.weight": np.arange(n * 2, dtype=np.float32).reshape(2, n)}, str(path),
              metadata=metadata)
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = resolve_paths(tmp_path / "data")
    paths.ensure()
    _safetensors(paths.lora_dir / "chars" / "Toon.safetensors",
                 {"ss_base_model_version": "sd_v1", "ss_tag_frequency": TAGS, "ss_network_dim": "4"})
    (paths.lora_dir / "chars" / "Toon.json").write_text(json.dumps({"notes": "my note"}), encoding="utf-8")
    (paths.lora_dir / "chars" / "Toon.preview.png").write_bytes(b"png")
    _safetensors(paths.embeddings_dir / "bad-hands.safetensors")
    _safetensors(paths.vae_dir / "kl-f8.safetensors")
    _safetensors(paths.data_dir / "models" / "ESRGAN" / "4x.pth")
    _safetensors(paths.text_encoder_dir / "clip_l.safetensors")
    vlm = paths.data_dir / "models" / "VLM" / "tiny-vlm"
    vlm.mkdir(parents=True)
    (vlm / "config.json").write_text(json.dumps({"architectures": ["TinyVLM"]}), encoding="utf-8")
    (vlm / "model.safetensors").write_bytes(b"x")
    _safetensors(paths.ckpt_dirs[0] / "model.safetensors")
    return paths


@pytest.fixture
def library(paths: Paths) -> ModelLibrary:
    hashes = HashCache(paths.hash_cache_file)
    return ModelLibrary(paths, CheckpointCatalog(paths.ckpt_dirs[:1], hashes), hashes)


def _ids(library: ModelLibrary, kind: str, paths: Paths) -> list[str]:
    data = paths.data_dir.resolve()
    return [e.id for e in library.entries(kind) if data in e.root.resolve().parents]


def test_every_kind_is_listed(library: ModelLibrary, paths: Paths) -> None:
    assert _ids(library, "lora", paths) == ["chars/Toon.safetensors"]
    assert _ids(library, "embedding", paths) == ["bad-hands.safetensors"]
    assert _ids(library, "vae", paths) == ["kl-f8.safetensors"]
    assert _ids(library, "upscaler", paths) == ["4x.pth"]
    assert _ids(library, "text_encoder", paths) == ["clip_l.safetensors"]
    vlm = [e for e in library.entries("vlm") if e.id == "tiny-vlm"]
    assert vlm and vlm[0].is_folder and library.family(vlm[0]) == "TinyVLM"  # a folder, not its files
    assert "model.safetensors" in _ids(library, "checkpoint", paths)
    assert [e.id for e in library.entries("lora", "TOON chars")] == ["chars/Toon.safetensors"]
    assert library.entries("lora", "nothing-like-it") == []
    with pytest.raises(LibraryError, match="unknown kind"):
        library.entries("hypernetwork")


def test_details_metadata_trigger_words_notes_preview(library: ModelLibrary) -> None:
    entry = library.find("lora", "chars/Toon.safetensors")
    info = library.details(entry)
    assert info["family"] == "SD1" and info["training"]["ss_network_dim"] == "4"
    assert info["trigger_words"][:3] == ["toon", "smile", "red hair"]
    assert info["user_metadata"]["notes"] == "my note"
    assert info["preview"].endswith("Toon.preview.png") and info["preview_source"] == "file"
    assert info["sha256"] is None and info["autov2"] is None  # the details never hash
    assert trigger_words({"ss_tag_frequency": "not json"}) == []


def test_rows_and_preview_for_the_page(library: ModelLibrary, paths: Paths) -> None:
    from PIL import Image

    rows = library.rows("lora")
    assert rows == [["chars/Toon.safetensors", "SD1", rows[0][2], "not hashed yet", "", ""]]
    entry = library.find("lora", "chars/Toon.safetensors")
    (paths.lora_dir / "chars" / "Toon.preview.png").unlink()
    assert library.preview_data_uri(entry) == ""  # no picture beside it
    Image.new("RGB", (300, 200), "red").save(paths.lora_dir / "chars" / "Toon.preview.png")
    assert library.preview_data_uri(entry).startswith("data:image/")


def test_preview_from_the_first_image_made_with_it(library: ModelLibrary, paths: Paths) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    entry = library.find("embedding", "bad-hands.safetensors")
    info = PngInfo()
    info.add_text("parameters", "a cow\nNegative prompt: bad-hands\nSteps: 4, Seed: 3, Model: m")
    image = paths.outputs_dir / "txt2img-images" / "2026-01-01" / "00001.png"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64), "blue").save(image, pnginfo=info)
    details = library.details(entry)
    assert details["preview_source"] == "output" and details["preview"].endswith("00001.png")
    assert library.preview_data_uri(entry).startswith("data:image/")
    assert library.details(library.find("vae", "kl-f8.safetensors"))["preview"] is None


def test_background_hashing_matches_hashlib_and_fills_the_listing(library: ModelLibrary, paths: Paths) -> None:
    worker = HashWorker(library.hashes, library_targets(library))
    assert worker.start()
    assert worker.wait(60)
    progress = worker.progress()
    assert not progress.running and progress.done == progress.total >= 6 and not progress.errors
    lora = paths.lora_dir / "chars" / "Toon.safetensors"
    data = lora.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    header = int.from_bytes(data[:8], "little")
    addnet = hashlib.sha256(data[8 + header:]).hexdigest()
    hashes = library.cached_hashes(library.find("lora", "chars/Toon.safetensors"))
    assert hashes == {"sha256": sha, "autov2": sha[:10], "addnet": addnet[:12]}
    info = library.catalog.find("model.safetensors")
    assert info is not None and library.catalog.shorthash(info) == \
        hashlib.sha256((paths.ckpt_dirs[0] / "model.safetensors").read_bytes()).hexdigest()[:10]
    assert worker.start() and worker.wait(60)
    assert worker.progress().computed == 0  # everything was cached: nothing read again


def test_hashing_never_blocks_a_reader(library: ModelLibrary) -> None:
    gate = threading.Event()

    def slow(path: Path) -> str:
        gate.wait(10)
        return "0" * 64

    slow_cache = HashCache(library.paths.cache_dir / "slow.json", sha256_fn=slow, addnet_fn=slow)
    worker = HashWorker(slow_cache, library_targets(library))
    worker.start()
    assert not worker.start()  # one run at a time
    entry = library.find("lora", "chars/Toon.safetensors")
    assert slow_cache.cached_sha256(entry.path) is None  # answered at once while a file is being hashed
    assert worker.progress().running
    gate.set()
    assert worker.wait(30) and worker.progress().done == worker.progress().total


def test_rename_keeps_extension_sidecars_and_hashes(library: ModelLibrary, paths: Paths) -> None:
    sha = library.hashes.sha256(paths.lora_dir / "chars" / "Toon.safetensors")
    renamed = library.rename("lora", "chars/Toon.safetensors", "Cartoon")
    assert renamed.id == "chars/Cartoon.safetensors"
    assert library.cached_hashes(renamed)["sha256"] == sha  # carried over: the renamed file is not read again
    folder = paths.lora_dir / "chars"
    assert sorted(p.name for p in folder.iterdir()) == ["Cartoon.json", "Cartoon.preview.png", "Cartoon.safetensors"]
    for bad in ("../evil", "a/b", "", ".hidden", "x\\y"):
        with pytest.raises(LibraryError, match="new name"):
            library.rename("lora", "chars/Cartoon.safetensors", bad)
    _safetensors(folder / "Other.safetensors")
    with pytest.raises(LibraryError, match="exists already"):
        library.rename("lora", "chars/Cartoon.safetensors", "Other")
    with pytest.raises(LibraryError, match="no LoRA named"):
        library.rename("lora", "../../config.json", "x")


def test_delete_moves_to_trash_never_removes(library: ModelLibrary, paths: Paths) -> None:
    content = (paths.lora_dir / "chars" / "Toon.safetensors").read_bytes()
    moved = library.delete("lora", "chars/Toon.safetensors")
    assert moved.read_bytes() == content and (paths.data_dir / "trash") in moved.parents
    assert (moved.parent / "Toon.json").is_file() and (moved.parent / "Toon.preview.png").is_file()
    assert not list((paths.lora_dir / "chars").iterdir())
    with pytest.raises(LibraryError, match="no LoRA named"):
        library.delete("lora", "chars/Toon.safetensors")
    with pytest.raises(LibraryError, match="no Embeddings named"):
        library.delete("embedding", "/etc/passwd")


def test_links_out_of_the_folder_and_the_loaded_checkpoint_are_refused(paths: Paths, tmp_path: Path) -> None:
    outside = _safetensors(tmp_path / "outside" / "secret.safetensors")
    (paths.lora_dir / "link.safetensors").symlink_to(outside)
    hashes = HashCache(paths.hash_cache_file)
    model = paths.ckpt_dirs[0] / "model.safetensors"
    library = ModelLibrary(paths, CheckpointCatalog(paths.ckpt_dirs[:1], hashes), hashes, loaded=lambda: model)
    with pytest.raises(LibraryError, match="link out"):
        library.delete("lora", "link.safetensors")
    assert outside.is_file()
    with pytest.raises(LibraryError, match="loaded checkpoint"):
        library.delete("checkpoint", "model.safetensors")
    assert library.details(library.find("checkpoint", "model.safetensors"))["loaded"]


def test_known_models_catalogue() -> None:
    from modules.models.download_job import DownloadModelRequest
    from modules.models.known_models import known_catalogue

    catalogue = known_catalogue()
    flux = catalogue.find("flux1-schnell")
    assert {f.kind for f in flux.files} == {"checkpoint", "vae", "text_encoder"}  # FLUX's companion files
    assert all(f.sha256 is None or len(f.sha256) == 64 for m in catalogue.models for f in m.files)
    for _, choice in catalogue.choices():
        _, file = catalogue.pick(choice)
        DownloadModelRequest(**file.download_fields())  # every entry makes a valid download request
    with pytest.raises(LookupError):
        catalogue.pick("flux1-schnell/99")
    form = catalogue.form("flux1-schnell/1")
    assert (form["kind"], form["source"], form["location"], form["hf_file"]) == (
        "vae", "Hugging Face", "black-forest-labs/FLUX.1-schnell", "ae.safetensors")
    assert "clip_l.safetensors" in form["note"] and "steps 4" in form["note"]


@pytest.mark.slow
def test_models_api(studio_factory) -> None:
    def prepare(data: Path, ckpt: Path) -> None:
        _safetensors(data / "models" / "Lora" / "Toon.safetensors", {"ss_tag_frequency": TAGS})

    srv = studio_factory(["--api", "--nowebui"], load=False, prepare=prepare, name="models-api")
    client = srv.client()
    listed = client.get("/api/v1/models", params={"kind": "lora"}).json()
    assert [i["id"] for i in listed["items"]] == ["Toon.safetensors"] and listed["items"][0]["sha256"] is None
    models = client.get("/sdapi/v1/sd-models").json()
    assert models and all(m["hash"] is None for m in models)
    started = client.post("/api/v1/models/hashing").json()
    assert started["started"] is True
    srv.ctx.hashing.wait(60)
    progress = client.get("/api/v1/models/hashing").json()
    assert progress["running"] is False and progress["done"] == progress["total"] > 0
    models = client.get("/sdapi/v1/sd-models").json()
    assert all(m["hash"] and m["title"].endswith(f"[{m['hash']}]") for m in models)
    item = client.get("/api/v1/models/item", params={"kind": "lora", "id": "Toon.safetensors"}).json()
    assert item["trigger_words"][0] == "toon" and len(item["autov2"]) == 10 and len(item["addnet"]) == 12
    assert client.get("/api/v1/models/item", params={"kind": "lora", "id": "../x"}).status_code == 404
    bad = client.post("/api/v1/models/rename", json={"kind": "lora", "id": "Toon.safetensors", "new_name": "a/b"})
    assert bad.status_code == 400 and "new name" in bad.json()["detail"]
    renamed = client.post("/api/v1/models/rename", json={"kind": "lora", "id": "Toon.safetensors",
                                                         "new_name": "Cartoon"}).json()
    assert renamed["id"] == "Cartoon.safetensors"
    gone = client.post("/api/v1/models/delete", json={"kind": "lora", "id": "Cartoon.safetensors"}).json()
    assert gone["trash"].startswith("trash/models/")
    assert client.get("/api/v1/models", params={"kind": "lora"}).json()["items"] == []
    for name in ("refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"):
        answer = client.post(f"/sdapi/v1/{name}")
        assert answer.status_code == 200 and answer.json() is None
    known = client.get("/api/v1/models/known").json()
    flux = next(m for m in known["models"] if m["id"] == "flux1-schnell")
    assert flux["files"][0]["download"]["kind"] == "download_model"


@pytest.mark.slow
def test_the_launcher_hashes_in_the_background_after_the_port_opens(tmp_path: Path) -> None:
    import time

    import httpx

    from tests.helpers.processes import start_launch, wait_up
    from tests.helpers.server import free_port

    data = tmp_path / "data"
    lora = _safetensors(data / "models" / "Lora" / "Bg.safetensors", n=4096)
    port = free_port()
    log = tmp_path / "launch.log"
    proc = start_launch(["--nowebui", "--data-dir", str(data), "--port", str(port), "--skip-load-model-at-start"],
                        log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_up(http, proc, log)
            deadline = time.time() + 60
            while time.time() < deadline:
                progress = http.get("/api/v1/models/hashing").json()
                if progress["finished_at"] is not None:
                    break
                time.sleep(0.2)
            assert progress["started_at"] is not None and not progress["running"], progress  # started by itself
            item = http.get("/api/v1/models/item", params={"kind": "lora", "id": "Bg.safetensors"}).json()
            assert item["sha256"] == hashlib.sha256(lora.read_bytes()).hexdigest()
    finally:
        proc.terminate()
        proc.wait(20)
