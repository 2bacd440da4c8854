"""kill -9 at random moments while images are saved: nothing half-written, nothing lost.

A real ``launch.py --nowebui`` process runs a stream of native-API txt2img jobs (batch size 2-4,
so files are written all the time) and is killed with SIGKILL after a seeded random delay, over
several rounds. Saving reserves ``NNNNN.tmp`` and ``os.replace``-s the finished PNG onto its final
name (:mod:`modules.images.saving`), so after every kill:

* every image file under ``outputs/`` opens and fully decodes;
* a reservation left by the kill is a ``*.tmp`` file, never an image-looking name, and History
  (:class:`modules.gallery.history.HistoryIndex`) ignores it: it lists exactly the image files;

and after a last clean start, once the resumed jobs have drained, every job the API reports
``succeeded`` has all its images on disk, served byte for byte, and each one decodes; every other
job failed with the crash reason (nothing else can end a job here).

A reservation left by a kill is never deleted (nothing in the studio cleans ``*.tmp``), which is
harmless: History lists only image suffixes and numbering counts the ``.tmp`` name, so its number
is skipped, never reused. A kill lands inside the few milliseconds of a PNG write only now and
then, so the test also plants such a half-written reservation itself.
"""

from __future__ import annotations

import base64
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from modules.gallery.history import IMAGE_SUFFIXES, HistoryIndex
from modules.images.saving import get_next_sequence_number
from modules.jobs.model import CRASH_REASON
from tests.helpers.processes import start_launch, wait_up
from tests.helpers.server import free_port

SIZE = 64
ROUNDS = 2                  # killed rounds; one more, clean start drains the queue
MAX_JOBS_PER_ROUND = 40
FINAL_STATES = {"succeeded", "failed", "cancelled"}
HALF_WRITTEN = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00@"


def _start(data: Path, ckpt: Path, port: int, log: Path) -> subprocess.Popen:
    """The server on the tiny checkpoint (``--ckpt``: loaded at start instead of the embedded default)."""
    return start_launch(["--nowebui", "--data-dir", str(data), "--ckpt-dir", str(ckpt.parent), "--ckpt",
                         str(ckpt), "--port", str(port)], log)


def _wait_up(http: httpx.Client, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    wait_up(http, proc, log, timeout, poll=0.1)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _check_outputs(outputs: Path, when: str) -> int:
    """Every image-named file decodes; leftovers are ``*.tmp`` only; History lists exactly the images."""
    images: set[str] = set()
    for path in sorted(outputs.rglob("*")) if outputs.is_dir() else []:
        if not path.is_file() or ".trash" in path.parts:
            continue
        name = path.name.lower()
        if name.endswith(IMAGE_SUFFIXES):
            with Image.open(path) as image:  # raises on a truncated or empty file
                image.load()
                assert image.size == (SIZE, SIZE), f"{when}: {path} is {image.size}"
            images.add(path.relative_to(outputs).as_posix())
        else:
            assert name.endswith(".tmp"), f"{when}: unexpected file {path}"
            assert path.stem.isdigit(), f"{when}: a reservation is named NNNNN.tmp, not {path.name}"
    listed = {entry.relative for entry in HistoryIndex(outputs).scan()}
    assert listed == images, f"{when}: History lists {sorted(listed ^ images)} differently"
    return len(images)


class _Feeder(threading.Thread):
    """Keeps the queue about three jobs deep until the server dies (or ``MAX_JOBS_PER_ROUND``), so the
    kill always lands in a busy stream of saves. Records how many images each accepted job asks for."""

    def __init__(self, base_url: str, rng: random.Random, seed_base: int) -> None:
        super().__init__(daemon=True)
        self.base_url, self.seed_base = base_url, seed_base
        self.shapes = [(rng.randint(2, 4), rng.randint(1, 2)) for _ in range(MAX_JOBS_PER_ROUND)]
        self.accepted: dict[str, int] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=30) as http:
                for i, (batch_size, n_iter) in enumerate(self.shapes):
                    body = {"prompt": "a red circle", "width": SIZE, "height": SIZE, "steps": 2,
                            "seed": self.seed_base + i, "batch_size": batch_size, "n_iter": n_iter}
                    r = http.post("/api/v1/jobs", json={"kind": "txt2img", "request": body})
                    assert r.status_code == 201, r.text
                    self.accepted[r.json()["id"]] = batch_size * n_iter
                    while (r.json()["position"] or 0) >= 3:
                        time.sleep(0.03)
                        r = http.get(f"/api/v1/jobs/{r.json()['id']}")
        except httpx.TransportError:
            pass  # killed: a submit in flight may or may not have been recorded
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc


def _plant_half_written(outputs: Path) -> Path:
    """What a kill in the middle of a PNG write leaves: the next reservation, half a PNG in it. Made
    by hand, because a random kill lands inside the few milliseconds of a write only now and then."""
    folder = max(p for p in outputs.rglob("*") if p.is_dir() and any(p.glob("*.png")))
    planted = folder / f"{get_next_sequence_number(folder):05}.tmp"
    planted.write_bytes(HALF_WRITTEN)
    return planted


def _wait_saving(outputs: Path, before: int, timeout: float = 120) -> None:
    """Until the server has saved an image more than ``before`` (the stream is running)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sum(1 for _ in outputs.rglob("*.png")) > before:
            return
        time.sleep(0.02)
    raise AssertionError("no image was saved")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_while_saving_loses_and_breaks_nothing(tmp_path: Path, tiny_model) -> None:
    rng = random.Random(33)
    (tmp_path / "ckpt").mkdir()
    ckpt = Path(shutil.copy(tiny_model("sd1"), tmp_path / "ckpt"))
    data, log = tmp_path / "data", tmp_path / "server.log"
    outputs = data / "outputs"
    submitted: dict[str, int] = {}
    leftovers = 0
    planted: Path | None = None
    began = time.time()
    proc: subprocess.Popen | None = None
    try:
        for round_no in range(ROUNDS):
            port = free_port()
            proc = _start(data, ckpt, port, log)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                _wait_up(http, proc, log)
            saved = sum(1 for _ in outputs.rglob("*.png"))
            feeder = _Feeder(f"http://127.0.0.1:{port}", rng, 1000 * (round_no + 1))
            feeder.start()
            print(f"round {round_no + 1}: up after {time.time() - began:.1f} s")
            _wait_saving(outputs, saved)
            time.sleep(rng.uniform(0.1, 1.5))  # a random moment of the save stream
            _kill(proc)
            feeder.join(30)
            assert feeder.error is None, feeder.error
            submitted |= feeder.accepted
            leftovers = sum(1 for p in outputs.rglob("*.tmp") if p != planted)
            if round_no == 0:
                planted = _plant_half_written(outputs)
            _check_outputs(outputs, f"after kill {round_no + 1}")

        port = free_port()
        proc = _start(data, ckpt, port, log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _wait_up(http, proc, log)
            deadline = time.time() + 240
            while True:
                jobs = http.get("/api/v1/jobs", params={"limit": 500}).json()["jobs"]
                if all(j["state"] in FINAL_STATES for j in jobs):
                    break
                assert time.time() < deadline, f"the queue never drained: {[j['state'] for j in jobs]}"
                time.sleep(0.2)
            assert {j["kind"] for j in jobs} <= {"txt2img", "load_model"}  # the start-up model loads
            jobs = [j for j in jobs if j["kind"] == "txt2img"]
            listed = {j["id"] for j in jobs}
            assert set(submitted) <= listed, "a job accepted with 201 was lost by a kill"
            assert len(listed - set(submitted)) <= ROUNDS  # at most the submit in flight at each kill
            states = [j["state"] for j in jobs]
            assert states.count("failed") >= 1, f"no kill landed while a job ran: {states}"
            checked = 0
            for job in jobs:
                if job["state"] == "failed":
                    assert job["error"] == CRASH_REASON, job
                    continue
                assert job["state"] == "succeeded", job
                result = http.get(f"/api/v1/jobs/{job['id']}/result").json()
                if job["id"] in submitted:
                    assert len(result["images"]) == submitted[job["id"]], f"succeeded job {job['id']}: {result}"
                assert not result["info"]["interrupted"], result["info"]
                for entry in result["images"]:
                    path = Path(entry["path"])
                    assert not entry["missing"] and path.is_file(), f"{job['id']}: {path} is missing"
                    assert base64.b64decode(entry["image"]) == path.read_bytes()
                    with Image.open(path) as image:
                        image.load()
                    checked += 1
            assert checked >= 10, states
        print(f"{time.time() - began:.1f} s: {len(jobs)} jobs, {states.count('succeeded')} succeeded, "
              f"{checked} images checked, {leftovers} reservations left by kills")
        proc.terminate()  # a clean stop this time
        assert proc.wait(30) == 0
        assert _check_outputs(outputs, "at the end") >= checked
        assert planted is not None
        if planted.exists():  # not cleaned up: then it still holds its number, and nothing wrote into it
            assert planted.read_bytes() == HALF_WRITTEN
            assert not list(planted.parent.glob(f"{planted.stem}-*")), "a save reused a reserved number"
    finally:
        if proc is not None and proc.poll() is None:
            _kill(proc)
