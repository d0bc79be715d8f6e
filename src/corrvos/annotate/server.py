"""The web server of ``corrvos annotate``: the page (static files of this package) and its JSON API (Starlette).

Routes (``{i}`` is a frame index, ``{obj}`` an object id; every body and answer is JSON unless said otherwise)::

    GET    /                          the page
    GET    /static/...                its script and style (package data, no CDN)
    GET    /api/project               frames, size, fps, objects, settings, annotated and propagated frames, job
    GET    /api/frames/{i}            the frame as JPEG (?format=png: lossless)
    GET    /api/masks/{i}             the frame's mask as raw bytes, H*W uint8 ids (header X-Mask-Kind:
                                      propagated | annotation | none); 204 when it has none
    PUT    /api/annotations/{i}       the frame's annotation: raw H*W uint8 ids (application/octet-stream, what the
                                      page draws) or a mask PNG (image/png; palette, grayscale or colour, as
                                      ``corrvos segment`` reads them)
    DELETE /api/annotations/{i}       remove the annotation
    POST   /api/objects               add an object {name?, colour?};  PATCH / DELETE /api/objects/{obj}
    PATCH  /api/settings              {opacity?, brush?, frame?, direction?}
    POST   /api/propagate             start {direction}; GET: progress; POST /api/propagate/cancel
    POST   /api/export                {kind, name?}: writes under <project>/exports, answers the path
    GET    /api/exports/overlay.mp4   the exported overlay video

Errors are ``{"error": one line}`` with status 400 (bad input; nothing changed), 404, 409 (a job is running), 413
(upload over the limit) or 415 (a body of another content type: JSON bodies must say application/json, so that a
web page of another site cannot post to the server without a CORS preflight, which the server never grants).

Safety: no route takes a path; frames and objects are addressed by number. Bound to 127.0.0.1 the server only
accepts requests whose Host is ``127.0.0.1`` or ``localhost`` (no DNS rebinding); with another ``--host`` every
request needs the token printed at start (``?token=`` once, then a cookie set by the server).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from corrvos.annotate.engine import Propagator
from corrvos.annotate.export import export
from corrvos.annotate.project import Project
from corrvos.errors import CorrvosError, DataError

__all__ = ["create_app", "serve"]

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "corrvos_annotate_token"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class _HTTPProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _TokenMiddleware:
    """Every request needs the token: ``?token=`` (the page's first load sets a cookie) or that cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            answer = JSONResponse({"error": "this server needs its token: open the URL it printed"}, status_code=403)
            await answer(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and "token" in request.query_params:
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def create_app(
    project: Project,
    propagator: Propagator,
    *,
    token: str | None = None,
    max_upload: int = 32 * 1024 * 1024,
    local_only: bool = True,
) -> Starlette:
    """The Starlette app serving ``project`` (see the module docstring).

    Args:
        project: the open project.
        propagator: runs the propagation jobs of this project.
        token: required on every request when given (``--host``).
        max_upload: largest accepted request body, bytes.
        local_only: accept only the Host names 127.0.0.1 and localhost (a server bound to 127.0.0.1).
    """
    h, w = project.size

    async def body(request: Request, kinds: tuple[str, ...]) -> tuple[bytes, str]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in kinds:
            raise _HTTPProblem(415, f"content type must be one of {', '.join(kinds)}, got {kind or 'none'!r}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload:
            raise _HTTPProblem(413, f"upload of {int(declared)} bytes is over the limit of {max_upload} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_upload:
                raise _HTTPProblem(413, f"upload is over the limit of {max_upload} bytes")
        return bytes(data), kind

    async def json_body(request: Request) -> dict[str, Any]:
        data, _ = await body(request, ("application/json",))
        try:
            value = json.loads(data or b"{}")
        except ValueError as exc:
            raise DataError(None, f"request body is not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise DataError(None, "request body must be a JSON object")
        return value

    def frame_index(request: Request) -> int:
        index = int(request.path_params["index"])
        if not 0 <= index < len(project.frame_names):
            raise _HTTPProblem(404, f"no frame {index}: the video has {len(project.frame_names)} frames")
        return index

    def state() -> dict[str, Any]:
        masks = project.masks_dir
        names = project.frame_names
        done = {p.stem for p in masks.glob("*.png")} if masks.is_dir() else set()
        return {
            "video": str(project.video),
            "project": str(project.root),
            "frames": names,
            "size": [h, w],
            "fps": project.frames.fps,
            "decoded": list(project.frames.decoded),  # [frames decoded, frames]: a video file decodes at start
            "objects": [asdict(o) for o in project.objects],
            "settings": asdict(project.settings),
            "annotated": project.annotated_frames(),
            "propagated": [i for i, n in enumerate(names) if n in done],
            "job": asdict(propagator.status()),
            "max_upload": max_upload,
        }

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def get_project(request: Request) -> Response:
        return JSONResponse(state())

    async def get_frame(request: Request) -> Response:
        i = frame_index(request)
        png = request.query_params.get("format") == "png"
        rgb = await asyncio.to_thread(project.frame, i)
        ok, data = cv2.imencode(".png" if png else ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise DataError(None, f"cannot encode frame {i}")
        headers = {"Cache-Control": "max-age=3600"}
        return Response(data.tobytes(), media_type="image/png" if png else "image/jpeg", headers=headers)

    async def get_mask(request: Request) -> Response:
        label, kind = project.mask(frame_index(request))
        if label is None:
            return Response(status_code=204, headers={"X-Mask-Kind": kind, "Cache-Control": "no-store"})
        headers = {"X-Mask-Kind": kind, "Cache-Control": "no-store"}
        return Response(np.ascontiguousarray(label).tobytes(), media_type="application/octet-stream", headers=headers)

    async def put_annotation(request: Request) -> Response:
        i = frame_index(request)
        data, kind = await body(request, ("application/octet-stream", "image/png"))
        label = _raw_label(data, (h, w)) if kind == "application/octet-stream" else _png_label(data)
        if propagator.status().state == "running":
            raise _HTTPProblem(409, "a propagation is running: cancel it or wait before changing annotations")
        ids = project.set_annotation(i, label, source=f"the mask for frame {project.frame_names[i]}")
        return JSONResponse({"ids": ids, **state()})

    async def delete_annotation(request: Request) -> Response:
        i = frame_index(request)
        if not project.delete_annotation(i):
            raise _HTTPProblem(404, f"frame {project.frame_names[i]} has no annotation")
        return JSONResponse(state())

    async def add_object(request: Request) -> Response:
        values = await json_body(request)
        project.add_object(_text(values, "name"), _text(values, "colour"))
        return JSONResponse(state())

    async def change_object(request: Request) -> Response:
        obj_id = int(request.path_params["obj"])
        if request.method == "DELETE":
            if propagator.status().state == "running":
                raise _HTTPProblem(409, "a propagation is running: cancel it or wait before deleting an object")
            await asyncio.to_thread(project.delete_object, obj_id)
        else:
            values = await json_body(request)
            project.update_object(obj_id, name=_text(values, "name"), colour=_text(values, "colour"))
        return JSONResponse(state())

    async def change_settings(request: Request) -> Response:
        values = await json_body(request)
        project.update_settings(**values)
        return JSONResponse(state())

    async def propagation(request: Request) -> Response:
        if request.method == "POST":
            values = await json_body(request)
            direction = _text(values, "direction") or "both"
            if propagator.status().state == "running":
                raise _HTTPProblem(409, "a propagation is running: cancel it or wait for it to finish")
            propagator.start(direction)
        return JSONResponse(asdict(propagator.status()))

    async def cancel(request: Request) -> Response:
        await json_body(request)  # a JSON request: another site's page cannot send it without a preflight
        return JSONResponse(asdict(propagator.cancel()))

    async def do_export(request: Request) -> Response:
        values = await json_body(request)
        kind = _text(values, "kind") or ""
        if propagator.status().state == "running":
            raise _HTTPProblem(409, "a propagation is running: export when it has finished")
        path = await asyncio.to_thread(export, project, kind, name=_text(values, "name"))
        return JSONResponse({"path": str(path), "relative": str(path.relative_to(project.root))})

    async def overlay_video(request: Request) -> Response:
        path = project.root / "exports" / "overlay.mp4"
        if not path.is_file():
            raise _HTTPProblem(404, "no overlay exported yet")
        return FileResponse(path, media_type="video/mp4")

    routes = [
        Route("/", index),
        Route("/api/project", _guard(get_project)),
        Route("/api/frames/{index:int}", _guard(get_frame)),
        Route("/api/masks/{index:int}", _guard(get_mask)),
        Route("/api/annotations/{index:int}", _guard(put_annotation), methods=["PUT"]),
        Route("/api/annotations/{index:int}", _guard(delete_annotation), methods=["DELETE"]),
        Route("/api/objects", _guard(add_object), methods=["POST"]),
        Route("/api/objects/{obj:int}", _guard(change_object), methods=["PATCH", "DELETE"]),
        Route("/api/settings", _guard(change_settings), methods=["PATCH"]),
        Route("/api/propagate", _guard(propagation), methods=["GET", "POST"]),
        Route("/api/propagate/cancel", _guard(cancel), methods=["POST"]),
        Route("/api/export", _guard(do_export), methods=["POST"]),
        Route("/api/exports/overlay.mp4", _guard(overlay_video)),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = []
    if local_only:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(LOCAL_HOSTS)))
    if token is not None:
        middleware.append(Middleware(_TokenMiddleware, token=token))
    app = Starlette(routes=routes, middleware=middleware)
    app.state.project, app.state.propagator = project, propagator
    return app


def _guard(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """Answer the user's errors as ``{"error": ...}`` with their status; nothing else is caught."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except _HTTPProblem as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except CorrvosError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return guarded


def _text(values: dict[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(None, f"{key} must be a string, got {type(value).__name__}")
    return value


def _raw_label(data: bytes, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if len(data) != h * w:
        raise DataError(None, f"mask has {len(data)} bytes but a frame has {h}x{w} = {h * w} pixels: nothing changed")
    return np.frombuffer(data, np.uint8).reshape(h, w).copy()  # [H, W]


def _png_label(data: bytes) -> np.ndarray:
    """A mask PNG read as ``corrvos segment`` reads it (palette / grayscale ids, colour masks numbered)."""
    import tempfile

    from corrvos.data.mask_formats import ColourMap, read_mask_any

    if data[:8] != b"\x89PNG\r\n\x1a\n":
        kind = "a JPEG" if data[:3] == b"\xff\xd8\xff" else "not a PNG"
        raise DataError(None, f"the mask file is {kind}: masks must be PNG (lossless); nothing changed")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mask.png"
        path.write_bytes(data)
        try:
            return read_mask_any(path, "auto", ColourMap()).label
        except DataError as exc:
            raise DataError(None, f"the mask file: {exc.problem}; nothing changed") from exc


def serve(
    project: Project,
    make_core: Callable[[int], Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    max_upload: int = 32 * 1024 * 1024,
) -> None:
    """Run the server until Ctrl-C: binds ``host:port`` (0: a free port), prints the URL and opens it."""
    import uvicorn

    local = host in LOCAL_HOSTS
    token = None if local else secrets.token_urlsafe(24)
    app = create_app(project, Propagator(project, make_core), token=token, max_upload=max_upload, local_only=local)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DataError(None, f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port") from exc
    bound = sock.getsockname()[1]
    shown = "127.0.0.1" if local else socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{bound}/" + ("" if token is None else f"?token={token}")
    print(f"corrvos annotate: open {url}  (Ctrl-C stops the server; the project is saved as you work)", flush=True)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
