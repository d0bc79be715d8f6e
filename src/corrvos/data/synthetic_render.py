"""Scene sampling and rasterisation of the synthetic videos (textured sprites over a moving textured background).

A scene is a large background canvas seen through a moving, zooming camera, with textured polygon sprites on
smooth trajectories drawn in z-order (later objects occlude earlier ones). Coordinates:
- *world* coordinates equal frame pixel coordinates (x right, y down) when the camera is at rest;
- the camera maps world to frame: frame = zoom(t) * (world - centre(t)) + (W/2, H/2);
- the canvas covers the world rectangle [-mx, W + mx] x [-my, H + my], so the camera never sees past it;
- a sprite has a polygon outline and a texture in its own local coordinates (origin at its centre), placed in the
  world by a rotation, a scale and a translation.

Rendering gives the frames and an *instance map* per frame (0 background, i + 1 where object i of
``SceneSpec.objects`` is visible); which instances become annotated labels is decided by
``corrvos.data.synthetic_video``.
All randomness is drawn in :func:`sample_scene`; :func:`render_scene` is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from corrvos.data.synthetic_textures import Family, background_texture, family_texture, random_family

__all__ = ["KINDS", "Motion", "ObjectSpec", "RenderedScene", "SceneSpec", "render_scene", "sample_scene"]

KINDS = ("blob", "bar", "dot")  # mid-size blob, thin bar, tiny dot
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision


@dataclass
class Motion:
    """A smooth trajectory: centre + sum_k amp[k] * (sin(omega[k] t + phase[k]) - sin(phase[k])).

    Attributes:
        centre: [2] (x, y) position at t = 0.
        amp: [K, 2] amplitudes (pixels) of the K harmonics along x and y.
        omega: [K] angular frequencies (radians per frame).
        phase: [K, 2] phases.
        angle0, spin: rotation at t = 0 (radians) and its rate (radians per frame).
        scale_amp, scale_omega: relative size oscillation 1 + scale_amp * sin(scale_omega t).
    """

    centre: np.ndarray
    amp: np.ndarray
    omega: np.ndarray
    phase: np.ndarray
    angle0: float = 0.0
    spin: float = 0.0
    scale_amp: float = 0.0
    scale_omega: float = 0.0

    def position(self, t: float) -> np.ndarray:
        """(x, y) at frame t, [2]."""
        wave = np.sin(self.omega[:, None] * t + self.phase) - np.sin(self.phase)  # [K, 2]
        return self.centre + (self.amp * wave).sum(axis=0)

    def angle(self, t: float) -> float:
        return self.angle0 + self.spin * t

    def scale(self, t: float) -> float:
        return 1.0 + self.scale_amp * float(np.sin(self.scale_omega * t))


@dataclass
class ObjectSpec:
    """One sprite of a scene.

    Attributes:
        kind: "blob" (mid-size), "bar" (thin) or "dot" (tiny).
        role: "target" (annotated), "distractor" (same family as a target, never annotated), "leaver" (annotated,
            leaves the frame and comes back) or "late" (annotated, drawn from frame ``start`` on).
        family: the appearance family.
        outline: [V, 2] polygon vertices in local coordinates (pixels).
        texture: uint8 RGB [S, S, 3] texture in local coordinates, centred on the sprite's origin.
        motion: the trajectory in world coordinates.
        start: first frame where the sprite is drawn.
        similar_to: for a distractor, the index (in ``SceneSpec.objects``) of the target it imitates.
    """

    kind: str
    role: str
    family: Family
    outline: np.ndarray
    texture: np.ndarray
    motion: Motion
    start: int = 0
    similar_to: int | None = None

    @property
    def annotated(self) -> bool:
        return self.role != "distractor"


@dataclass
class SceneSpec:
    """Everything needed to render a video; ``objects`` is in z-order (the last is on top)."""

    size: tuple[int, int]
    frames: int
    canvas: np.ndarray  # uint8 RGB [H + 2 my, W + 2 mx, 3]
    margin: tuple[int, int]  # (mx, my)
    camera: Motion  # centre(t); its scale() is the zoom
    gains: np.ndarray  # [T] global brightness factor per frame
    objects: list[ObjectSpec]


@dataclass
class RenderedScene:
    """Rendered video: frames uint8 [T, H, W, 3], instances uint8 [T, H, W], full_area int64 [T, n_objects]
    (the pixels each sprite covers inside the frame before occlusion)."""

    frames: np.ndarray
    instances: np.ndarray
    full_area: np.ndarray


# --------------------------------------------------------------------------------------------------- sampling


def _outline(rng: np.random.Generator, kind: str, base: float) -> np.ndarray:
    """Polygon [V, 2] of a sprite of the given kind; ``base`` is the image's smaller side."""
    if kind == "bar":
        length = base * rng.uniform(0.35, 0.6)
        width = max(2.0, base * rng.uniform(0.015, 0.03))
        return np.array(
            [[-length / 2, -width / 2], [length / 2, -width / 2], [length / 2, width / 2], [-length / 2, width / 2]],
            np.float32,
        )
    if kind == "dot":
        radius, aspect, vertices, wobble = max(2.5, base * rng.uniform(0.018, 0.03)), rng.uniform(0.75, 1.0), 16, 0.0
    else:
        radius, aspect, vertices, wobble = base * rng.uniform(0.11, 0.19), rng.uniform(0.55, 1.0), 48, 0.15
    phi = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    r = np.ones_like(phi)
    for harmonic in (2, 3, 5):  # star-convex outline: a few Fourier harmonics of the radius
        r += rng.uniform(0, wobble) * np.cos(harmonic * phi + rng.uniform(0, 2 * np.pi))
    return np.stack([radius * r * np.cos(phi), radius * aspect * r * np.sin(phi)], axis=1).astype(np.float32)


def _make_object(
    rng: np.random.Generator,
    *,
    kind: str,
    role: str,
    family: Family,
    motion: Motion,
    base: float,
    start: int = 0,
    similar_to: int | None = None,
) -> ObjectSpec:
    outline = _outline(rng, kind, base)
    side = 2 * int(np.ceil(np.abs(outline).max() * 1.25)) + 4
    return ObjectSpec(
        kind=kind,
        role=role,
        family=family,
        outline=outline,
        texture=family_texture(rng, family, side, side),
        motion=motion,
        start=start,
        similar_to=similar_to,
    )


def _wander(
    rng: np.random.Generator, centre: np.ndarray, size: tuple[int, int], period: float, spin_max: float
) -> Motion:
    """A random two-harmonic trajectory around ``centre`` (a slow one up to 18% of the frame, a faster small one)."""
    h, w = size
    amp = np.stack([rng.uniform(0.04, 0.18, 2), rng.uniform(0.02, 0.08, 2)])  # [K=2, xy]: slow wide, fast small
    amp = amp * np.array([w, h]) * rng.choice([-1, 1], (2, 2))
    omega = 2 * np.pi / period * np.array([rng.uniform(0.3, 0.8), rng.uniform(0.8, 1.6)])
    return Motion(
        centre=centre,
        amp=amp,
        omega=omega,
        phase=rng.uniform(0, 2 * np.pi, (2, 2)),
        angle0=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.uniform(-spin_max, spin_max)),
        scale_amp=float(rng.uniform(0, 0.12)),
        scale_omega=float(2 * np.pi / period * rng.uniform(0.3, 1)),
    )


def _place(
    rng: np.random.Generator, size: tuple[int, int], taken: list[tuple[np.ndarray, float]], radius: float
) -> np.ndarray:
    """A frame-0 centre in the middle 70% of the frame, away from the already placed sprites when possible."""
    h, w = size
    best, best_gap = None, -np.inf
    for _ in range(30):
        c = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h])
        gap = min((np.linalg.norm(c - p) - 0.8 * (r + radius) for p, r in taken), default=np.inf)
        if gap > best_gap:
            best, best_gap = c, gap
        if gap > 0:
            break
    return best


def _cross(rng: np.random.Generator, mover: ObjectSpec, still: ObjectSpec, frames: int) -> np.ndarray:
    """The shift of ``mover``'s trajectory that makes it pass over ``still`` at a middle frame (slightly off-centre)."""
    t_mid = int(rng.integers(int(0.3 * (frames - 1)), int(0.7 * (frames - 1)) + 1))
    reach = float(np.abs(still.outline).max())
    offset = rng.uniform(-0.4, 0.4, 2) * reach
    return still.motion.position(t_mid) - mover.motion.position(t_mid) + offset


def _arrange_crossings(
    rng: np.random.Generator, objects: list[ObjectSpec], depth: np.ndarray, frames: int, size: tuple[int, int]
) -> None:
    """Make occlusions happen: distractors cross in front of a target, and often a target in front of another.

    Shifts trajectories (``motion.centre``) and raises ``depth`` in place.
    """
    h, w = size
    targets = [i for i, o in enumerate(objects) if o.role == "target"]
    for i, obj in enumerate(objects):
        if obj.role == "distractor" and targets and rng.random() < 0.7:
            victim = int(rng.choice(targets))
            obj.motion.centre = obj.motion.centre + _cross(rng, obj, objects[victim], frames)
            depth[i] = max(depth[i], depth[victim] + 1e-3)
    if len(targets) >= 2 and rng.random() < 0.6:
        front, back = (int(k) for k in rng.choice(targets, 2, replace=False))
        shifted = objects[front].motion.centre + _cross(rng, objects[front], objects[back], frames)
        if 0.1 * w <= shifted[0] <= 0.9 * w and 0.1 * h <= shifted[1] <= 0.9 * h:  # still in view at frame 0
            objects[front].motion.centre = shifted
            depth[front] = max(depth[front], depth[back] + 1e-3)


def sample_scene(
    rng: np.random.Generator, frames: int, size: tuple[int, int], *, late_objects: bool = False, sample_step: int = 5
) -> SceneSpec:
    """Draw a random scene: background, camera path, 2-4 targets, 1-2 distractors, maybe a leaver / late objects.

    Args:
        rng: the generator all randomness comes from.
        frames: number of frames T.
        size: (H, W) of the frames.
        late_objects: add 1-2 annotated objects that appear only from a later frame (a multiple of
            ``sample_step``), in 3 videos out of 4.
        sample_step: the annotation step of the YouTube-VOS layout.
    """
    h, w = size
    base = float(min(h, w))
    period = float(np.clip(frames - 1, 10, 40))  # motion time scale (frames); short videos move less
    mx, my = int(np.ceil(0.25 * w)), int(np.ceil(0.25 * h))
    canvas = background_texture(rng, h + 2 * my, w + 2 * mx, base_size=base)
    cam_amp = rng.uniform(0.0, 0.03, (2, 2)) * np.array([w, h])  # |offset| <= 0.12 of the frame
    camera = Motion(
        centre=np.array([w / 2, h / 2]),
        amp=cam_amp,
        omega=2 * np.pi / period * np.array([rng.uniform(0.2, 0.6), rng.uniform(0.6, 1.2)]),
        phase=rng.uniform(0, 2 * np.pi, (2, 2)),
        scale_amp=float(rng.uniform(0, 0.07)),
        scale_omega=float(2 * np.pi / period * rng.uniform(0.2, 0.8)),
    )
    gains = 1.0 + rng.uniform(0, 0.08) * np.sin(
        2 * np.pi / period * rng.uniform(0.2, 1) * np.arange(frames) + rng.uniform(0, 2 * np.pi)
    )

    n_targets = int(rng.integers(2, 5))
    hue0 = float(rng.random())
    kinds = ["blob"] + [str(k) for k in rng.choice(["blob", "blob", "bar", "dot"], n_targets - 1)]
    leaver = int(rng.integers(0, n_targets)) if frames >= 3 and rng.random() < 0.5 else -1
    objects: list[ObjectSpec] = []
    taken: list[tuple[np.ndarray, float]] = []
    for i, kind in enumerate(kinds):
        family = random_family(rng, hue=hue0 + i / n_targets + rng.uniform(-0.04, 0.04), base_size=base)
        radius = base * (0.15 if kind == "blob" else 0.25 if kind == "bar" else 0.03)
        centre = _place(rng, size, taken, radius)
        taken.append((centre, radius))
        motion = _wander(rng, centre, size, period, spin_max=(0.25 if kind == "bar" else 0.08))
        obj = _make_object(rng, kind=kind, role="target", family=family, motion=motion, base=base)
        if i == leaver:  # half a period of a wide horizontal sweep: out through the nearer side and back
            obj.role = "leaver"
            sign = -1.0 if centre[0] < w / 2 else 1.0
            reach = float(np.abs(obj.outline).max()) * (1 + motion.scale_amp)
            motion.amp = np.array([[sign * (1.05 * w + 1.2 * reach), 0.0], [0.0, 0.05 * h]])
            motion.omega = np.array([np.pi / (frames - 1), 2 * np.pi / period])
            motion.phase = np.array([[0.0, 0.0], [0.0, rng.uniform(0, 2 * np.pi)]])
        objects.append(obj)

    for _ in range(1 + int(rng.random() < 0.35)):  # distractors: same kind and family as a target
        target = int(rng.integers(0, n_targets))
        kind = objects[target].kind
        radius = base * (0.15 if kind == "blob" else 0.25 if kind == "bar" else 0.03)
        centre = _place(rng, size, taken, radius)
        taken.append((centre, radius))
        motion = _wander(rng, centre, size, period, spin_max=0.1)
        objects.append(
            _make_object(
                rng,
                kind=kind,
                role="distractor",
                family=objects[target].family,
                motion=motion,
                base=base,
                similar_to=target,
            )
        )

    depth = rng.random(len(objects))  # z of each sprite (higher is in front)
    if frames >= 3:
        _arrange_crossings(rng, objects, depth, frames, size)
    order = [int(i) for i in np.argsort(depth, kind="stable")]  # z-order of targets and distractors
    remap = {old: new for new, old in enumerate(order)}
    objects = [objects[i] for i in order]
    for obj in objects:
        if obj.similar_to is not None:
            obj.similar_to = remap[obj.similar_to]

    if late_objects and frames > sample_step and rng.random() < 0.75:
        for _ in range(1 + int(rng.random() < 0.3)):  # late objects pop in on top of the others
            kind = str(rng.choice(["blob", "blob", "bar", "dot"]))
            family = random_family(rng, base_size=base)
            start = sample_step * int(rng.integers(1, (frames - 1) // sample_step + 1))
            radius = base * (0.15 if kind == "blob" else 0.25 if kind == "bar" else 0.03)
            centre = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h])
            motion = _wander(rng, centre, size, period, spin_max=0.1)
            motion.centre = 2 * centre - motion.position(start)  # so that it is at ``centre`` at ``start``
            objects.append(
                _make_object(rng, kind=kind, role="late", family=family, motion=motion, base=base, start=start)
            )
    return SceneSpec(
        size=size, frames=frames, canvas=canvas, margin=(mx, my), camera=camera, gains=gains, objects=objects
    )


# -------------------------------------------------------------------------------------------------- rendering


def _camera_matrix(scene: SceneSpec, t: int) -> np.ndarray:
    """[2, 3] affine world -> frame at frame t."""
    h, w = scene.size
    zoom = scene.camera.scale(t)
    cx, cy = scene.camera.position(t)
    return np.array([[zoom, 0.0, w / 2 - zoom * cx], [0.0, zoom, h / 2 - zoom * cy]])


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """[2, 3] affine outer o inner."""
    return outer[:, :2] @ inner + np.concatenate([np.zeros((2, 2)), outer[:, 2:]], axis=1)


def _draw_object(frame: np.ndarray, instances: np.ndarray, obj: ObjectSpec, to_frame: np.ndarray, value: int) -> int:
    """Paint one sprite into frame [H, W, 3] and instances [H, W] in place; returns its pixel count."""
    h, w = instances.shape
    pts = obj.outline @ to_frame[:, :2].T + to_frame[:, 2]  # [V, 2] frame coordinates
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return 0
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    fixed = np.round((pts - [x0, y0]) * (1 << _SUBPIXEL_BITS)).astype(np.int32)  # [V, 2] fixed point
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    inside = mask.astype(bool)
    count = int(inside.sum())
    if count == 0:
        return 0
    half = obj.texture.shape[0] / 2
    tex_to_roi = _compose(to_frame, np.array([[1.0, 0.0, -half], [0.0, 1.0, -half]]))  # texture px -> frame
    tex_to_roi[:, 2] -= [x0, y0]
    patch = cv2.warpAffine(
        obj.texture, tex_to_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )  # [h_roi, w_roi, 3]
    frame[y0:y1, x0:x1][inside] = patch[inside]
    instances[y0:y1, x0:x1][inside] = value
    return count


def render_scene(scene: SceneSpec) -> RenderedScene:
    """Rasterise every frame of a scene (deterministic)."""
    h, w = scene.size
    mx, my = scene.margin
    n_frames, n_objects = scene.frames, len(scene.objects)
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    instances = np.zeros((n_frames, h, w), np.uint8)
    full_area = np.zeros((n_frames, n_objects), np.int64)
    for t in range(n_frames):
        cam = _camera_matrix(scene, t)
        canvas_to_frame = _compose(cam, np.array([[1.0, 0.0, -mx], [0.0, 1.0, -my]]))
        frame = cv2.warpAffine(
            scene.canvas, canvas_to_frame, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )  # [H, W, 3]
        for i, obj in enumerate(scene.objects):
            if t < obj.start:
                continue
            angle, scale = obj.motion.angle(t), obj.motion.scale(t)
            cos, sin = scale * np.cos(angle), scale * np.sin(angle)
            x, y = obj.motion.position(t)
            local_to_world = np.array([[cos, -sin, x], [sin, cos, y]])
            full_area[t, i] = _draw_object(frame, instances[t], obj, _compose(cam, local_to_world), i + 1)
        frames[t] = cv2.convertScaleAbs(frame, alpha=float(scene.gains[t]))
    return RenderedScene(frames=frames, instances=instances, full_area=full_area)
