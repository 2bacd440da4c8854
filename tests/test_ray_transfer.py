"""Issue 30 with Ray: checkpoints sent through Ray's object store (setting ``ray_model_transfer``), and a local
Ray started by ``--ray auto`` listening on 127.0.0.1 only. One single-threaded CPU actor, tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modules.distributed.model_transfer import Shipper, TransferError, cached_path, ensure_local
from modules.generation.requests import Txt2ImgRequest
from modules.jobs.model import JobState
from modules.jobs.submit import submit_job
from modules.models.hashing import sha256_file

REPO = Path(__file__).resolve().parent.parent


def _ray_missing() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"Ray is not installed (pip install -r requirements-ray.txt): {exc}"
    return None


needs_ray = pytest.mark.skipif(_ray_missing() is not None, reason=str(_ray_missing()))


def test_a_fetch_is_checked_and_a_damaged_one_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "m.safetensors"
    source.write_bytes(bytes(range(256)) * 40)
    store: list[bytes] = []

    def put(block: bytes) -> int:
        store.append(block)
        return len(store) - 1

    shipper = Shipper(put, chunk_bytes=1000)
    sha = sha256_file(source)
    shipment = shipper.shipment(source, "sub/m.safetensors", sha).as_dict()
    assert shipper.shipment(source, "sub/m.safetensors", sha).chunks == shipment["chunks"] and shipper.puts == 1
    assert len(shipment["chunks"]) == 11  # 10240 bytes in 1000-byte chunks
    cache = tmp_path / "cache"
    path, fetched = ensure_local(cache, shipment, get=store.__getitem__, hash_of=sha256_file)
    assert fetched and path == cache / "sub" / "m.safetensors" and path.read_bytes() == source.read_bytes()
    assert ensure_local(cache, shipment, get=store.__getitem__, hash_of=sha256_file) == (path, False)
    path.write_bytes(b"x" * path.stat().st_size)  # damaged in the cache: fetched again
    assert ensure_local(cache, shipment, get=store.__getitem__, hash_of=sha256_file) == (path, True)
    store[3] = b"y" * len(store[3])  # damaged on the way: refused, nothing left behind
    path.unlink()
    with pytest.raises(TransferError, match="another SHA-256"):
        ensure_local(cache, shipment, get=store.__getitem__, hash_of=sha256_file)
    assert not path.exists() and list(path.parent.iterdir()) == []
    with pytest.raises(TransferError):
        cached_path(cache, "../escape.safetensors")


def test_auto_joins_only_what_ray_start_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from modules.distributed.ray_workers import _started_here

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert _started_here() is None  # nothing started with `ray start`: a Ray of our own
    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text("127.0.0.1:1\n")
    assert _started_here() is None  # left behind by a stopped Ray
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        record.write_text(address + "\n")
        assert _started_here() == address


@needs_ray
def test_auto_keeps_a_local_ray_on_loopback_before_ray_is_imported() -> None:
    code = """
import json, os
from modules.distributed.ray_workers import prepare_local_ray, local_only
os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
os.environ.pop("RAY_ADDRESS", None)
prepare_local_ray("auto")
import ray
from ray._private.services import get_node_ip_address
print(json.dumps({"local": local_only(ray), "ip": get_node_ip_address()}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"local": True, "ip": "127.0.0.1"}


@pytest.fixture(scope="module")
def transfer_studio(studio_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache = tmp_path_factory.mktemp("ray-model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATELIER_RAY_MODEL_CACHE", str(cache))  # the actor's node-local cache (inherited by Ray)
        srv = studio_factory(("--nowebui", "--api", "--ray", "auto", "--ray-cpu-actors", "1"), load=False,
                             name="ray-transfer")
    srv.ctx.settings.update({"ray_model_transfer": "object_store"})
    return srv, cache


def _run(ctx: Any, checkpoint: str) -> Any:
    job = submit_job(ctx, Txt2ImgRequest(prompt="a red square", steps=1, width=64, height=64, seed=1,
                                         checkpoint=checkpoint), owner="transfer")
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    return job


@needs_ray
def test_a_checkpoint_goes_through_the_object_store_once(transfer_studio: Any) -> None:
    srv, cache = transfer_studio
    ctx = srv.ctx
    name = srv.checkpoints[0].name
    first = _run(ctx, name)
    [row] = ctx.cluster.state()
    assert row["fetches"] == 1 and row["checkpoint_cached"] is True, row  # loaded from the actor's own cache
    cached = cache / name
    assert sha256_file(cached) == sha256_file(srv.checkpoints[0])
    assert ctx.cluster.shipper.puts == 1
    second = _run(ctx, name)
    [row] = ctx.cluster.state()
    assert row["fetches"] == 1 and ctx.cluster.shipper.puts == 1  # in the cache already: nothing sent again
    assert second.result.infotexts[0] == first.result.infotexts[0]  # the same model hash and name as ever
    assert "Model hash: " + sha256_file(srv.checkpoints[0])[:10] in first.result.infotexts[0]


@needs_ray
def test_the_local_ray_listens_on_loopback_only(transfer_studio: Any) -> None:
    import psutil

    srv, _ = transfer_studio
    if not srv.ctx.cluster.owns_ray:
        pytest.skip("--ray auto joined a Ray already running on this machine; its processes are not this test's")
    ray_procs = {p.pid: p.name() for p in psutil.Process().children(recursive=True)}
    assert {"gcs_server", "raylet"} <= set(ray_procs.values()), ray_procs
    listening = [(ray_procs[c.pid], c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ray_procs]
    assert {name for name, _, _ in listening} >= {"gcs_server", "raylet"}, listening
    open_to_all = [row for row in listening if row[1] in ("0.0.0.0", "::")]
    assert not open_to_all, open_to_all
    assert all(ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for _, ip, _ in listening), listening
