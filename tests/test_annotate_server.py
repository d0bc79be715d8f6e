"""The HTTP API of `corrvos annotate` (issue #23 part 2) through Starlette's TestClient: frames, masks, objects,
uploads and their checks, propagation jobs, exports, the token and the Host check."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2 for its TestClient; httpx works the same here
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from corrvos.annotate import Project, Propagator
from corrvos.annotate.server import create_app
from corrvos.data.io import read_label
from test_annotate_project import _folder, _make_core, _scene

LOCAL = "http://127.0.0.1"
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture
def served(tmp_path: Path, ckpt: Path):
    frames = _folder(tmp_path / "frames", 4)
    with Project.open(tmp_path / "proj", frames) as project:
        app = create_app(project, Propagator(project, _make_core(ckpt, frames)), max_upload=20_000)
        yield TestClient(app, base_url=LOCAL), project


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_frames_masks_and_annotations_round_trip(served) -> None:
    client, project = served
    state = client.get("/api/project").json()
    assert state["frames"] == ["00000", "00001", "00002", "00003"] and state["size"] == [48, 80]
    assert state["annotated"] == [] and state["objects"] == []
    png = client.get("/api/frames/2?format=png")
    assert png.headers["content-type"] == "image/png"
    decoded = np.array(Image.open(io.BytesIO(png.content)).convert("RGB"))
    assert np.array_equal(decoded, _scene(2)[0])
    assert client.get("/api/frames/1").headers["content-type"] == "image/jpeg"
    assert client.get("/api/frames/4").status_code == 404
    assert client.get("/api/masks/1").status_code == 204

    label = _scene(1)[1]
    put = client.put(
        "/api/annotations/1", content=label.tobytes(), headers={"content-type": "application/octet-stream"}
    )
    assert put.status_code == 200 and put.json()["ids"] == [1, 2] and put.json()["annotated"] == [1]
    got = client.get("/api/masks/1")
    assert got.headers["x-mask-kind"] == "annotation"
    assert np.array_equal(np.frombuffer(got.content, np.uint8).reshape(48, 80), label)
    assert np.array_equal(read_label(project.annotations_dir / "00001.png"), label)

    palette = _png(np.where(_scene(3)[1] == 2, 2, 0).astype(np.uint8), "L")  # a grayscale mask PNG of object 2
    assert client.put("/api/annotations/3", content=palette, headers={"content-type": "image/png"}).json()["ids"] == [2]
    assert client.delete("/api/annotations/3").json()["annotated"] == [1]
    assert client.delete("/api/annotations/3").status_code == 404


@pytest.mark.parametrize(
    ("body", "kind", "status", "message"),
    [
        (np.zeros((10, 80), np.uint8).tobytes(), "application/octet-stream", 400, "mask has 800 bytes but a frame"),
        (_png(np.zeros((10, 80), np.uint8), "L"), "image/png", 400, "mask is 10x80 but the frames are 48x80"),
        (b"\xff\xd8\xff\xe0 jpeg", "image/png", 400, "the mask file is a JPEG: masks must be PNG"),
        (b"\x89PNG\r\n\x1a\n broken", "image/png", 400, "the mask file: "),
        (b"x" * 20_001, "application/octet-stream", 413, "over the limit of 20000 bytes"),
        (b"{}", "text/plain", 415, "content type must be one of"),
    ],
)
def test_bad_uploads_get_one_clear_message_and_change_nothing(served, body, kind, status, message) -> None:
    client, project = served
    answer = client.put("/api/annotations/0", content=body, headers={"content-type": kind})
    assert answer.status_code == status
    assert message in answer.json()["error"]
    assert "\n" not in answer.json()["error"]
    assert project.annotated_frames() == [] and not project.annotations_dir.exists()


def test_objects_settings_propagation_and_exports(served) -> None:
    client, project = served
    json_type = {"content-type": "application/json"}
    assert client.post("/api/propagate", json={"direction": "both"}).json()["error"].startswith("no annotated frame")
    state = client.post("/api/objects", json={"name": "car"}).json()
    assert state["objects"] == [{"id": 1, "name": "car", "colour": "#800000"}]
    state = client.patch("/api/objects/1", json={"colour": "#112233"}).json()
    assert state["objects"][0]["colour"] == "#112233"
    assert client.patch("/api/objects/9", json={"name": "x"}).json()["error"] == "no object with id 9"
    assert (
        client.post("/api/objects", content=b'{"name": "x"}', headers={"content-type": "text/plain"}).status_code == 415
    )
    assert client.patch("/api/settings", json={"opacity": 0.3}).json()["settings"]["opacity"] == 0.3
    assert "opacity must lie in [0, 1]" in client.patch("/api/settings", json={"opacity": 3}).json()["error"]
    assert client.patch("/api/settings", content=b"[1", headers=json_type).json()["error"].startswith("request body")

    label = _scene(0)[1]
    client.put("/api/annotations/0", content=label.tobytes(), headers={"content-type": "application/octet-stream"})
    assert client.post("/api/propagate", json={"direction": "up"}).status_code == 400
    assert client.post("/api/propagate/cancel").status_code == 415  # JSON only, as every changing request
    assert client.post("/api/propagate/cancel", json={}).json()["state"] == "idle"
    assert client.post("/api/propagate", json={"direction": "forward"}).json()["state"] == "running"
    status = client.app.state.propagator.wait(60)
    assert status.state == "done" and status.frames_written == 4
    state = client.get("/api/project").json()
    assert state["propagated"] == [0, 1, 2, 3] and state["job"]["state"] == "done"
    assert client.get("/api/masks/2").headers["x-mask-kind"] == "propagated"

    answer = client.post("/api/export", json={"kind": "palette"}).json()
    assert answer["relative"] == "exports/masks"
    assert sorted(p.name for p in Path(answer["path"]).iterdir()) == [f"{t:05d}.png" for t in range(4)]
    assert client.post("/api/export", json={"kind": "zip"}).json()["error"].startswith("unknown export 'zip'")
    assert client.get("/api/exports/overlay.mp4").status_code == 404
    assert client.post("/api/export", json={"kind": "overlay"}).status_code == 200
    assert client.get("/api/exports/overlay.mp4").headers["content-type"] == "video/mp4"
    assert client.delete("/api/objects/1").status_code == 200
    assert not np.any(project.mask(2)[0] == 1)


def test_static_files_and_no_path_traversal(served) -> None:
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert all(client.get(f"/static/{name}").status_code == 200 for name in ("app.js", "draw.js", "style.css"))
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/api/frames/-1"):
        assert client.get(path).status_code == 404, path


def test_host_header_and_token(tmp_path: Path) -> None:
    frames = _folder(tmp_path / "frames", 2)
    with Project.open(tmp_path / "proj", frames) as project:
        local = TestClient(create_app(project, Propagator(project, lambda n: None)), base_url="http://evil.example")
        assert local.get("/api/project").status_code == 400  # DNS rebinding: another Host is refused
        app = create_app(project, Propagator(project, lambda n: None), token="s3cret", local_only=False)
        client = TestClient(app, base_url="http://192.0.2.1")
        assert client.get("/api/project").status_code == 403
        assert client.get("/?token=wrong").status_code == 403
        first = client.get("/?token=s3cret")
        assert first.status_code == 200 and "corrvos_annotate_token=s3cret" in first.headers["set-cookie"]
        assert client.get("/api/project").status_code == 200  # the cookie now carries the token
