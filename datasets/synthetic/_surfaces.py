"""Procedural object families of the synthetic dataset.

Organized formats use *height fields* over a table: ``h = family(u, v, params)`` in object units
(the object spans about [-1, 1]^2, heights up to ~0.5). Unorganized formats use closed or open
*parametric surfaces* sampled by area (points + outward normals).

Every family draws its own small shape changes from the generator's RNG (``jitter``), so two normal
samples of one category differ the way real parts do (shape, then pose/scale/noise elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Rng = np.random.Generator


def cap(x: np.ndarray) -> np.ndarray:
    """Smooth bump profile: 1 at 0, 0 for x >= 1, bounded slope (C1 at the rim)."""
    t = np.clip(1.0 - x * x, 0.0, None)
    return t * np.sqrt(t)


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ------------------------------------------------------------------------------------------------
# height fields (organized formats)

HeightFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _dome(rng: Rng) -> HeightFn:
    e, hgt = rng.uniform(0.72, 0.82), rng.uniform(0.46, 0.52)
    return lambda u, v: hgt * cap(np.hypot(u, v / e))


def _ring(rng: Rng) -> HeightFn:
    r0, w, hgt = rng.uniform(0.62, 0.68), rng.uniform(0.28, 0.31), rng.uniform(0.33, 0.37)
    return lambda u, v: hgt * cap(np.abs(np.hypot(u, v) - r0) / w)


def _capsule_h(u, v, half_len, half_w, hgt):
    du = np.maximum(np.abs(u) - (half_len - half_w), 0.0)
    return hgt * cap(np.hypot(du, v) / half_w)


def _bar(rng: Rng) -> HeightFn:
    hl, hw, hgt = rng.uniform(0.92, 0.98), rng.uniform(0.33, 0.37), rng.uniform(0.28, 0.32)
    return lambda u, v: _capsule_h(u, v, hl, hw, hgt)


def _cookie(rng: Rng) -> HeightFn:
    hgt, edge = rng.uniform(0.17, 0.19), rng.uniform(0.24, 0.28)
    dome = rng.uniform(0.03, 0.05)

    def f(u, v):
        r = np.hypot(u, v)
        return hgt * smoothstep((0.9 - r) / edge) + dome * cap(r / 0.9)

    return f


def _blob(rng: Rng) -> HeightFn:
    a3, a2 = rng.uniform(0.08, 0.14), rng.uniform(0.05, 0.1)
    p3, p2 = rng.uniform(-0.15, 0.15, 2) + (0.5, 1.3)
    hgt = rng.uniform(0.4, 0.46)

    def f(u, v):
        phi = np.arctan2(v, u)
        rad = 0.85 * (1 + a3 * np.sin(3 * phi + p3) + a2 * np.cos(2 * phi + p2))
        return hgt * cap(np.hypot(u, v) / rad)

    return f


def _pad(rng: Rng) -> HeightFn:
    hgt, amp = rng.uniform(0.23, 0.27), rng.uniform(0.03, 0.05)
    ph = rng.uniform(-0.3, 0.3)

    def f(u, v):
        s = (u**4 + v**4) ** 0.25
        return hgt * smoothstep((0.88 - s) / 0.22) * (1 + amp * np.sin(6 * u + ph) * np.sin(6 * v))

    return f


def _gland(rng: Rng) -> HeightFn:
    hgt, hw = rng.uniform(0.18, 0.22), rng.uniform(0.22, 0.26)
    top = rng.uniform(0.36, 0.42)

    def f(u, v):
        cross = np.maximum(_capsule_h(u, v, 0.95, hw, hgt), _capsule_h(v, u, 0.95, hw, hgt))
        return np.maximum(cross, top * cap(np.hypot(u, v) / 0.45))

    return f


def _cone(rng: Rng) -> HeightFn:
    hgt, e = rng.uniform(0.42, 0.48), rng.uniform(0.9, 1.0)
    return lambda u, v: hgt * np.clip(1 - (u * u + (v / e) ** 2) / 0.8, 0, None) ** 2


def _rope(rng: Rng) -> HeightFn:
    amp, freq, ph = rng.uniform(0.2, 0.26), rng.uniform(2.3, 2.7), rng.uniform(-0.2, 0.2)
    hw, hgt = rng.uniform(0.2, 0.23), rng.uniform(0.19, 0.21)

    def f(u, v):
        centre = amp * np.sin(freq * u + ph)
        d = np.hypot(np.maximum(np.abs(u) - 0.85, 0), (v - centre) * np.cos(np.arctan(amp * freq)))
        return hgt * cap(d / hw)

    return f


def _tire(rng: Rng) -> HeightFn:
    r0, w, hgt = rng.uniform(0.6, 0.66), rng.uniform(0.3, 0.33), rng.uniform(0.3, 0.34)
    treads, depth = int(rng.integers(20, 25)), rng.uniform(0.05, 0.08)

    def f(u, v):
        r, phi = np.hypot(u, v), np.arctan2(v, u)
        return hgt * cap(np.abs(r - r0) / w) * (1 - depth * (0.5 + 0.5 * np.cos(treads * phi)))

    return f


HEIGHT_FAMILIES: dict[str, Callable[[Rng], HeightFn]] = {
    "dome": _dome,
    "ring": _ring,
    "bar": _bar,
    "cookie": _cookie,
    "blob": _blob,
    "pad": _pad,
    "gland": _gland,
    "cone": _cone,
    "rope": _rope,
    "tire": _tire,
}


# ------------------------------------------------------------------------------------------------
# parametric surfaces (unorganized formats)
# A patch maps (s, t) in [0,1]^2 to points; `outward(points)` gives a direction the normal must
# agree with (the sign of the finite-difference normal is fixed by it).

Patch = tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _radial_patch(
    radius: Callable[[np.ndarray, np.ndarray], np.ndarray], scale=(1.0, 1.0, 1.0)
) -> Patch:
    sx, sy, sz = scale

    def fn(s, t):
        theta, phi = np.pi * s, 2 * np.pi * t
        r = radius(theta, phi)
        return np.stack(
            [
                sx * r * np.sin(theta) * np.cos(phi),
                sy * r * np.sin(theta) * np.sin(phi),
                sz * r * np.cos(theta),
            ],
            axis=-1,
        )

    return fn, lambda p: p


def _revolution_patch(profile: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> Patch:
    def fn(s, t):
        rho, z = profile(s)
        phi = 2 * np.pi * t
        return np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=-1)

    def outward(p):
        out = p.copy()
        out[:, 2] = 0.0
        return out

    return fn, outward


def _disk_patch(radius: float, z: float, up: bool) -> Patch:
    def fn(s, t):
        r, phi = radius * np.sqrt(s), 2 * np.pi * t
        return np.stack([r * np.cos(phi), r * np.sin(phi), np.full_like(r, z)], axis=-1)

    sign = 1.0 if up else -1.0
    return fn, lambda p: np.tile([0.0, 0.0, sign], (len(p), 1))


def _torus_patch(
    r0: float, r1: float, centre=(0.0, 0.0, 0.0), axis_x: bool = False, arc=1.0
) -> Patch:
    c = np.asarray(centre)

    def fn(s, t):
        a, b = 2 * np.pi * s * arc, 2 * np.pi * t
        x = (r0 + r1 * np.cos(b)) * np.cos(a)
        y = (r0 + r1 * np.cos(b)) * np.sin(a)
        z = r1 * np.sin(b)
        p = np.stack([x, y, z], axis=-1)
        if axis_x:
            p = p[..., [0, 2, 1]]
        return p + c

    def outward(p):
        q = p - c
        if axis_x:
            q = q[:, [0, 2, 1]]
        ring = q.copy()
        ring[:, 2] = 0
        ring *= r0 / np.maximum(np.linalg.norm(ring, axis=1, keepdims=True), 1e-9)
        out = q - ring
        return out[:, [0, 2, 1]] if axis_x else out

    return fn, outward


def _egg(rng: Rng) -> list[Patch]:
    k, e = rng.uniform(0.12, 0.18), rng.uniform(0.75, 0.85)
    return [_radial_patch(lambda th, ph: 1 + k * np.cos(th), (e, e, 1.0))]


def _torus(rng: Rng) -> list[Patch]:
    return [_torus_patch(rng.uniform(0.64, 0.7), rng.uniform(0.26, 0.3))]


def _capsule(rng: Rng) -> list[Patch]:
    r, half = rng.uniform(0.36, 0.4), rng.uniform(0.55, 0.62)

    def profile(s):
        # arc length along the silhouette: top cap, cylinder, bottom cap
        total = np.pi * r + 2 * half
        d = s * total
        rho = np.where(
            d < np.pi * r / 2,
            r * np.sin(d / r),
            np.where(d < np.pi * r / 2 + 2 * half, r, r * np.sin((total - d) / r)),
        )
        z = np.where(
            d < np.pi * r / 2,
            half + r * np.cos(d / r),
            np.where(
                d < np.pi * r / 2 + 2 * half,
                half - (d - np.pi * r / 2),
                -half - r * np.cos((total - d) / r),
            ),
        )
        return rho, z

    return [_revolution_patch(profile)]


def _vase(rng: Rng) -> list[Patch]:
    base, amp, ph = rng.uniform(0.38, 0.42), rng.uniform(0.14, 0.18), rng.uniform(-0.2, 0.2)

    def profile(s):
        z = -0.9 + 1.8 * s
        return base + amp * np.sin(2.4 * z + 1.2 + ph), z

    rho0 = base + amp * np.sin(2.4 * -0.9 + 1.2 + ph)
    return [_revolution_patch(profile), _disk_patch(rho0, -0.9, up=False)]


def _superellipsoid(rng: Rng) -> list[Patch]:
    ex, sc = rng.uniform(0.3, 0.36), rng.uniform(0.62, 0.7)

    def fn(s, t):
        th, ph = np.pi * s - np.pi / 2, 2 * np.pi * t - np.pi
        f = lambda w, m: np.sign(w) * np.abs(w) ** m  # noqa: E731
        x = f(np.cos(th), ex) * f(np.cos(ph), ex)
        y = f(np.cos(th), ex) * f(np.sin(ph), ex)
        z = f(np.sin(th), ex)
        return np.stack([x, y * 0.85, z * sc], axis=-1)

    return [(fn, lambda p: p)]


def _cup(rng: Rng) -> list[Patch]:
    r, half = rng.uniform(0.45, 0.5), rng.uniform(0.6, 0.66)
    body = _revolution_patch(lambda s: (np.full_like(s, r), -half + 2 * half * s))
    handle = _torus_patch(0.3, 0.07, centre=(r + 0.17, 0.0, 0.0), axis_x=True)
    return [body, _disk_patch(r, -half, up=False), handle]


def _bowl(rng: Rng) -> list[Patch]:
    r, depth = rng.uniform(0.85, 0.92), rng.uniform(0.5, 0.56)

    def outer(s):
        a = 0.5 * np.pi * (0.15 + 0.85 * s)
        return r * np.sin(a), -depth * np.cos(a)

    def inner(s):
        a = 0.5 * np.pi * (0.15 + 0.85 * s)
        return (r - 0.06) * np.sin(a), -(depth - 0.06) * np.cos(a)

    fo, oo = _revolution_patch(outer)
    fi, _ = _revolution_patch(inner)
    return [(fo, oo), (fi, lambda p: -oo(p))]


def _star(rng: Rng) -> list[Patch]:
    arms, amp, ph = 5, rng.uniform(0.3, 0.36), rng.uniform(-0.05, 0.05)
    return [
        _radial_patch(lambda th, phi: 0.8 * (1 + amp * np.cos(arms * phi + ph)), (1.0, 1.0, 0.3))
    ]


def _duck(rng: Rng) -> list[Patch]:
    hx = rng.uniform(0.42, 0.5)
    body = _radial_patch(lambda th, ph: np.ones_like(th), (0.85, 0.55, 0.5))
    fn, _ = _radial_patch(lambda th, ph: np.ones_like(th), (0.32, 0.3, 0.3))
    head = (
        lambda s, t: fn(s, t) + np.array([hx, 0.0, 0.55]),
        lambda p: p - np.array([hx, 0.0, 0.55]),
    )
    return [body, head]


def _bottle(rng: Rng) -> list[Patch]:
    r, neck = rng.uniform(0.38, 0.42), rng.uniform(0.14, 0.17)

    def profile(s):
        z = -0.95 + 1.9 * s
        shoulder = smoothstep((z - 0.2) / 0.35)
        return r * (1 - shoulder) + neck * shoulder, z

    return [_revolution_patch(profile), _disk_patch(r, -0.95, up=False)]


SURFACE_FAMILIES: dict[str, Callable[[Rng], list[Patch]]] = {
    "egg": _egg,
    "torus": _torus,
    "capsule": _capsule,
    "vase": _vase,
    "box": _superellipsoid,
    "cup": _cup,
    "bowl": _bowl,
    "star": _star,
    "duck": _duck,
    "bottle": _bottle,
}


def _patch_eval(patch: Patch, s: np.ndarray, t: np.ndarray, eps: float = 1e-4):
    fn, outward = patch
    s = np.clip(s, eps, 1 - eps)
    p = fn(s, t)
    ps = fn(s + eps, t) - p
    pt = fn(s, t + eps) - p
    n = np.cross(ps, pt)
    area = np.linalg.norm(n, axis=1)
    n = n / np.maximum(area, 1e-12)[:, None]
    flip = np.sum(n * outward(p), axis=1) < 0
    n[flip] *= -1
    return p, n, area


def sample_surface(patches: list[Patch], n: int, rng: Rng) -> tuple[np.ndarray, np.ndarray]:
    """About-uniform area sampling of `n` points (and outward normals) over the patches:
    uniform parameters, kept with probability proportional to the local area element (clipped at
    its 99.5th percentile, so singular parametrisations do not starve the acceptance)."""
    kept_p, kept_n, total, cap_w = [], [], 0, None
    for _ in range(50):
        batch = [_patch_eval(patch, rng.random(3 * n), rng.random(3 * n)) for patch in patches]
        p = np.concatenate([b[0] for b in batch])
        nn = np.concatenate([b[1] for b in batch])
        w = np.concatenate([b[2] for b in batch])
        w = np.where(np.isfinite(w), w, 0.0)
        if cap_w is None:
            cap_w = float(np.quantile(w, 0.995))
        keep = rng.random(len(w)) * cap_w < w
        kept_p.append(p[keep])
        kept_n.append(nn[keep])
        total += int(keep.sum())
        if total >= n:
            break
    p, nn = np.concatenate(kept_p), np.concatenate(kept_n)
    idx = rng.permutation(len(p))[:n]
    return p[idx], nn[idx]
