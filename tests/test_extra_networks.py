"""The extra networks browser's logic (modules/models/extra_networks.py and its helpers): cards per kind
from the model folders, search / folder / sort, pictures (beside the file, else the first output image made
with it, never a file outside the folders), A1111's ``<name>.json`` user metadata, the file's own ``ss_*``
training metadata, what a click inserts; and the ``/api/v1/extra-networks`` routes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydantic import ValidationError

from modules.models.catalog import CheckpointCatalog
from modules.models.extra_networks import ExtraNetworkError, ExtraNetworks
from modules.models.hashing import HashCache
from modules.models.network_metadata import UserMetadata, metadata_path, training_metadata
from modules.paths import Paths, resolve_paths

KOHYA = {"ss_output_name": "add_detail", "ss_base_model_version": "sd_v1", "ss_network_dim": "4",
         "modelspec.title": "Detail"}


def write_lora(path: Path, metadata: dict[str, str] | None = None, rank: int = 2) -> Path:
    """A tiny kohya-layout LoRA file (the header is what the browser reads)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((rank, 8), np.float16),
             "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": np.zeros((8, rank), np.float16),
             "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": np.array(1.0, np.float16)}
    save_file(state, str(path), metadata=metadata)
    return path


def write_embedding(path: Path, vectors: int = 2) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": np.zeros((vectors, 8), np.float32)}, str(path))
    return path


def write_image(path: Path, infotext: str | None = None, colour: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    if infotext is not None:
        info.add_text("parameters", infotext)
    Image.new("RGB", (300, 200), colour).save(path, pnginfo=info)
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = resolve_paths(tmp_path / "data")
    paths.ensure()
    write_lora(paths.lora_dir / "characters" / "Detail.safetensors", KOHYA, rank=4)
    write_lora(paths.lora_dir / "Style.safetensors", {"ss_base_model_version": "sdxl_base_v1-0"})
    write_embedding(paths.embeddings_dir / "bad-hands.safetensors")
    write_embedding(paths.embeddings_dir / "neg" / "easynegative.safetensors", vectors=8)
    (paths.ckpt_dirs[0] / "anime").mkdir(parents=True)
    (paths.ckpt_dirs[0] / "anime" / "toon.safetensors").write_bytes(b"not read by the listing")
    (paths.vae_dir / "kl-f8.safetensors").write_bytes(b"vae")
    return paths


@pytest.fixture
def networks(paths: Paths) -> ExtraNetworks:
    catalog = CheckpointCatalog(paths.ckpt_dirs[:1], HashCache(paths.cache_dir / "hashes.json"))
    return ExtraNetworks(paths, catalog, outputs_rescan_after=0)  # every call sees the outputs as they are now


def test_cards_per_kind_with_folders_alias_and_ids(networks: ExtraNetworks) -> None:
    loras = {c.id: c for c in networks.cards("lora")}
    assert set(loras) == {"characters/Detail.safetensors", "Style.safetensors"}
    detail = loras["characters/Detail.safetensors"]
    assert (detail.name, detail.folder, detail.alias) == ("Detail", "characters", "add_detail")
    assert loras["Style.safetensors"].folder == ""
    assert [c.name for c in networks.cards("embedding")] == ["bad-hands", "easynegative"]
    checkpoints = networks.cards("checkpoint")
    assert [(c.id, c.folder, c.name) for c in checkpoints] == [("anime/toon.safetensors", "anime",
                                                               "anime/toon.safetensors")]
    assert [c.id for c in networks.cards("vae")] == ["kl-f8.safetensors"]
    assert networks.folders("lora") == ["characters"]
    assert networks.folders("embedding") == ["neg"]
    with pytest.raises(ExtraNetworkError, match="unknown kind"):
        networks.cards("hypernetwork")


def test_search_folder_and_sort(networks: ExtraNetworks, paths: Paths) -> None:
    assert [c.name for c in networks.cards("lora", search="DETAIL")] == ["Detail"]
    assert [c.name for c in networks.cards("lora", search="add_detail")] == ["Detail"]  # the alias
    assert [c.name for c in networks.cards("lora", search="characters style")] == []  # every word must match
    assert [c.name for c in networks.cards("lora", folder="characters")] == ["Detail"]
    assert [c.name for c in networks.cards("lora", folder="charac")] == []  # a folder, not a prefix of a name
    assert [c.name for c in networks.cards("lora", sort="name")] == ["Detail", "Style"]
    assert [c.name for c in networks.cards("lora", sort="name", descending=True)] == ["Style", "Detail"]
    # Detail (rank 4) is larger than Style (rank 2)
    assert [c.name for c in networks.cards("lora", sort="size")] == ["Style", "Detail"]
    old = time.time() - 3600
    os.utime(paths.lora_dir / "Style.safetensors", (old, old))
    assert [c.name for c in networks.cards("lora", sort="date")] == ["Style", "Detail"]
    assert [c.name for c in networks.cards("lora", sort="date", descending=True)] == ["Detail", "Style"]
    with pytest.raises(ExtraNetworkError, match="unknown sort"):
        networks.cards("lora", sort="rating")


def test_find_only_listed_cards(networks: ExtraNetworks, paths: Paths) -> None:
    assert networks.find("lora", "Style.safetensors").name == "Style"
    (paths.data_dir / "secret.safetensors").write_bytes(b"x")
    for bad in ("../../secret.safetensors", str(paths.data_dir / "secret.safetensors"), "Style", ""):
        with pytest.raises(ExtraNetworkError, match="press Refresh"):
            networks.find("lora", bad)


def test_preview_beside_the_file_then_first_output_then_none(networks: ExtraNetworks, paths: Paths) -> None:
    detail = networks.find("lora", "characters/Detail.safetensors")
    style = networks.find("lora", "Style.safetensors")
    assert networks.preview(detail) == (None, "")
    assert networks.thumbnail_data_uri(detail) == ""
    # outputs: the oldest image whose prompt calls the LoRA (by its stem or its alias) is the picture
    outputs = paths.outputs_dir / "txt2img-images" / "2026-01-01"
    first = write_image(outputs / "00001.png", "a cat <lora:add_detail:0.7>\nSteps: 4, Seed: 1, Model: toon")
    later = write_image(outputs / "00002.png", "a dog <lora:Detail:1>\nSteps: 4, Seed: 2, Model: toon")
    write_image(outputs / "00003.png", "a cow\nNegative prompt: bad-hands, blurry\nSteps: 4, Seed: 3, Model: other")
    old = time.time() - 100
    os.utime(first, (old, old))
    os.utime(later, (old + 10, old + 10))
    assert networks.preview(detail) == (first, "output")
    assert networks.preview(style) == (None, "")
    assert networks.preview(networks.find("embedding", "bad-hands.safetensors"))[0].name == "00003.png"
    easy = networks.find("embedding", "neg/easynegative.safetensors")
    assert networks.preview(easy) == (None, "")
    weighted = write_image(outputs / "00004.png", "a hen\nNegative prompt: (EasyNegative:1.2), text\nSteps: 4")
    assert networks.preview(easy) == (weighted, "output")  # a new image is seen; any case, inside a weight
    assert networks.preview(networks.find("checkpoint", "anime/toon.safetensors")) == (first, "output")
    # a file beside the model wins; the thumbnail is a small cached JPEG, sent as a data: URI
    beside = write_image(paths.lora_dir / "characters" / "Detail.preview.png", colour="blue")
    assert networks.preview(detail) == (beside, "file")
    thumb = networks.thumbnail(detail)
    assert thumb is not None and thumb != beside and paths.cache_dir in thumb.parents
    with Image.open(thumb) as image:
        assert max(image.size) <= 192
    assert networks.thumbnail_data_uri(detail).startswith("data:image/jpeg;base64,")


def test_preview_never_leaves_the_model_folder(networks: ExtraNetworks, paths: Paths, tmp_path: Path) -> None:
    outside = write_image(tmp_path / "elsewhere" / "secret.png", colour="green")
    (paths.lora_dir / "Style.preview.png").symlink_to(outside)
    style = networks.find("lora", "Style.safetensors")
    assert networks.preview(style) == (None, "")
    # an output that is a symlink out of outputs/ is not a picture either
    outputs = paths.outputs_dir / "txt2img-images"
    outputs.mkdir(parents=True)
    linked = write_image(tmp_path / "elsewhere" / "made.png", "x <lora:Style:1>\nSteps: 1")
    (outputs / "made.png").symlink_to(linked)
    assert networks.preview(style) == (None, "")


def test_user_metadata_as_a1111_keeps_it(networks: ExtraNetworks, paths: Paths) -> None:
    detail = networks.find("lora", "characters/Detail.safetensors")
    metadata, note = networks.user_metadata(detail)
    assert note == "" and metadata.preferred_weight == 0 and metadata.sd_version == "SD1"  # from ss_base_model_version
    assert networks.prompt_text(detail) == "<lora:Detail:1>"
    target = metadata_path(detail.path)
    assert target == paths.lora_dir / "characters" / "Detail.json"
    target.write_text(json.dumps({"extension key": [1, 2], "description": "old"}), encoding="utf-8")
    saved = networks.save_user_metadata(detail, UserMetadata(description="Sharper details", activation_text="detailed",
                                                             negative_text="lowres", preferred_weight=0.6,
                                                             notes="from civitai", sd_version="SD1"))
    assert saved == target
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data == {"extension key": [1, 2], "description": "Sharper details", "activation text": "detailed",
                    "negative text": "lowres", "preferred weight": 0.6, "notes": "from civitai", "sd version": "SD1"}
    assert networks.negative_text(detail) == "lowres"
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert networks.prompt_text(detail) == "<lora:Detail:0.6> detailed"
    assert networks.prompt_text(networks.find("embedding", "bad-hands.safetensors")) == "bad-hands"
    assert networks.prompt_text(networks.find("checkpoint", "anime/toon.safetensors")) == ""


def test_user_metadata_validation_and_damaged_files(networks: ExtraNetworks, paths: Paths) -> None:
    with pytest.raises(ValidationError, match="less than or equal to 10"):
        UserMetadata(preferred_weight=20)
    with pytest.raises(ValidationError, match="sd version must be one of"):
        UserMetadata(sd_version="SD9")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        UserMetadata.model_validate({"descripton": "typo"})
    with pytest.raises(ValidationError):
        UserMetadata(preferred_weight=float("nan"))
    style = networks.find("lora", "Style.safetensors")
    target = metadata_path(style.path)
    target.write_text("{not json", encoding="utf-8")
    metadata, note = networks.user_metadata(style)
    assert "not readable JSON" in note and metadata.description == ""
    assert metadata.sd_version == "SDXL"
    # a hand-edited file with one odd value keeps the others (A1111 writes the weight as a number or a string)
    target.write_text(json.dumps({"description": "ok", "preferred weight": "0.4", "sd version": "SD9"}), encoding="utf-8")
    metadata, note = networks.user_metadata(style)
    assert (note, metadata.description, metadata.preferred_weight, metadata.sd_version) == ("", "ok", 0.4, "SDXL")
    # saving over a damaged file replaces it
    target.write_text("[1, 2", encoding="utf-8")
    networks.save_user_metadata(style, UserMetadata(description="new"))
    assert json.loads(target.read_text(encoding="utf-8"))["description"] == "new"


def test_training_metadata_from_the_header_only(networks: ExtraNetworks, paths: Paths) -> None:
    detail = networks.find("lora", "characters/Detail.safetensors")
    shown = networks.training_metadata(detail)
    assert list(shown) == ["ss_base_model_version", "ss_network_dim", "ss_output_name", "modelspec.title"]
    assert shown["ss_network_dim"] == "4"
    (paths.lora_dir / "old.pt").write_bytes(b"pickle")
    assert networks.training_metadata(networks.find("lora", "old.pt")) == {}
    broken = paths.lora_dir / "broken.safetensors"
    broken.write_bytes(b"\xff" * 4)
    assert training_metadata(broken) == {}
    assert networks.find("lora", "broken.safetensors").alias == ""


def test_api_lists_cards_serves_previews_and_saves_metadata(studio_factory) -> None:
    def prepare(data: Path, ckpt_dir: Path) -> None:
        models = data / "models"
        write_lora(models / "Lora" / "sub" / "Detail.safetensors", KOHYA)
        write_image(models / "Lora" / "sub" / "Detail.preview.png", colour="blue")
        write_embedding(models / "embeddings" / "bad-hands.safetensors")
        write_image(data / "secret.png", colour="green")

    srv = studio_factory(["--api", "--nowebui"], models=(), load=False, prepare=prepare, name="en-api")
    with srv.client() as client:
        listing = client.get("/api/v1/extra-networks", params={"kind": "lora"})
        assert listing.status_code == 200, listing.text
        body = listing.json()
        assert body["folders"] == ["sub"]
        [item] = body["items"]
        assert (item["id"], item["name"], item["alias"], item["prompt"], item["preview"]) == (
            "sub/Detail.safetensors", "Detail", "add_detail", "<lora:Detail:1>", "file")
        assert item["path"] == "models/Lora/sub/Detail.safetensors"  # relative to the data dir, never absolute
        picture = client.get(item["preview_url"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        assert client.get("/api/v1/extra-networks", params={"kind": "embedding"}).json()["items"][0]["prompt"] == \
            "bad-hands"
        assert client.get("/api/v1/extra-networks", params={"kind": "hypernetwork"}).status_code == 422
        for bad in ("../../secret.png", "../../secret", "sub/Detail.preview.png"):
            answer = client.get("/api/v1/extra-networks/preview", params={"kind": "lora", "id": bad})
            assert answer.status_code == 404, bad
        assert client.get("/api/v1/extra-networks/preview",
                          params={"kind": "embedding", "id": "bad-hands.safetensors"}).status_code == 404
        detail = client.get("/api/v1/extra-networks/item", params={"kind": "lora", "id": "sub/Detail.safetensors"})
        assert detail.json()["training_metadata"]["ss_output_name"] == "add_detail"
        saved = client.put("/api/v1/extra-networks/metadata", params={"kind": "lora", "id": "sub/Detail.safetensors"},
                           json={"preferred weight": 0.5, "activation text": "intricate"})
        assert saved.status_code == 200, saved.text
        assert saved.json()["prompt"] == "<lora:Detail:0.5> intricate"
        assert saved.json()["negative_prompt"] == ""
        refused = client.put("/api/v1/extra-networks/metadata", params={"kind": "lora", "id": "sub/Detail.safetensors"},
                             json={"preferred weight": 99})
        assert refused.status_code == 422
        ignored = client.put("/api/v1/extra-networks/metadata", params={"kind": "lora", "id": "sub/Detail.safetensors"},
                             json={"rating": 5})
        assert ignored.status_code == 422
    stored = json.loads((srv.root / "data" / "models" / "Lora" / "sub" / "Detail.json").read_text(encoding="utf-8"))
    assert stored["preferred weight"] == 0.5 and stored["activation text"] == "intricate"


def test_api_needs_credentials_when_configured(studio_factory) -> None:
    srv = studio_factory(["--api", "--nowebui", "--api-auth", "u:p"], models=(), load=False, name="en-auth")
    with srv.client() as client:
        assert client.get("/api/v1/extra-networks", params={"kind": "lora"}).status_code == 401
        assert client.get("/api/v1/extra-networks", params={"kind": "lora"}, auth=("u", "p")).status_code == 200


def test_cards_html_escapes_every_value(networks: ExtraNetworks, paths: Paths) -> None:
    from webui.extra_networks import cards_html

    odd = write_lora(paths.lora_dir / 'x"><img src=y onerror=alert(1)>.safetensors')
    card = networks.find("lora", odd.name)
    networks.save_user_metadata(card, UserMetadata(description="<b>bold</b>", activation_text='say "hi" & <go>'))
    page = cards_html(networks, "txt2img", "lora", networks.cards("lora"))
    assert "<img src=y" not in page and "<b>bold</b>" not in page and "<go>" not in page
    assert 'data-prompt="&lt;lora:x&quot;&gt;&lt;img src=y onerror=alert(1)&gt;:1&gt; say &quot;hi&quot; &amp; ' \
           '&lt;go&gt;"' in page
    assert page.count('class="atelier-en-card"') == 3
    empty = cards_html(networks, "txt2img", "lora", [])
    assert "No Lora found. Put files in models/Lora and press Refresh." in empty
    assert "No Lora matches the search" in cards_html(networks, "txt2img", "lora", [], filtered=True)


def test_save_preview_beside_the_model(networks: ExtraNetworks, paths: Paths, tmp_path: Path) -> None:
    style = networks.find("lora", "Style.safetensors")
    target = networks.save_preview(style, Image.new("RGB", (64, 48), "purple"))
    assert target == paths.lora_dir / "Style.preview.png"
    assert networks.preview(style) == (target, "file")
    assert not [p for p in paths.lora_dir.iterdir() if p.name.endswith(".tmp")]
    # a preview that is a link out of the folder is not written through
    target.unlink()
    outside = write_image(tmp_path / "elsewhere" / "keep.png", colour="green")
    target.symlink_to(outside)
    with pytest.raises(ExtraNetworkError, match="not inside the model folder"):
        networks.save_preview(style, Image.new("RGB", (8, 8)))
    with Image.open(outside) as image:
        assert image.getpixel((0, 0)) == (0, 128, 0)


def test_outputs_are_walked_once_per_page_of_cards(paths: Paths) -> None:
    networks = ExtraNetworks(paths, None, outputs_rescan_after=60)
    style = networks.find("lora", "Style.safetensors")
    assert networks.preview(style) == (None, "")
    write_image(paths.outputs_dir / "txt2img-images" / "00001.png", "x <lora:Style:1>\nSteps: 1")
    assert networks.preview(style) == (None, "")  # the walk of a moment ago is reused
    networks.uses.rescan_after = 0
    assert networks.preview(style)[1] == "output"
