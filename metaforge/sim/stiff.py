"""ROS2, the two-stage L-stable Rosenbrock method (Verwer, Spee, Blom, Hundsdorfer 1999), for
stiff ODE members: stable at any step, second order, one Jacobian (finite differences) and two
linear solves per step, vectorized over devices.

    (I - γhJ) k1 = f(t, y)
    (I - γhJ) k2 = f(t + h, y + h k1) - 2 k1
    y' = y + 3/2 h k1 + 1/2 h k2,     γ = 1 + 1/√2
"""

from __future__ import annotations

GAMMA = 1.0 + 2 ** -0.5


def ros2(f, t: float, h: float, ys: tuple, args: tuple) -> tuple:
    """One step of y' = f(t, y); time is carried as a state (t' = 1), so the method keeps its
    order on a non-autonomous system (the Jacobian then holds ∂f/∂t)."""
    import numpy as np

    scalar = all(np.ndim(y) == 0 for y in ys)
    cols = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in ys], np.asarray(t, dtype=float))
    y = np.stack([np.atleast_1d(c) for c in cols], axis=-1)          # (n, k + 1), the last column is t
    n, k = y.shape

    def rates(state, _unused=None):
        out = f(state[:, -1], *state[:, :-1].T, *args)
        cols = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in out], np.ones(n))
        return np.stack([np.broadcast_to(c, (n,)) for c in cols], axis=-1)

    f0 = rates(y)
    jac = np.empty((n, k, k))
    for j in range(k):
        dy = 1e-7 * np.maximum(1.0, np.abs(y[:, j]))
        yj = y.copy()
        yj[:, j] += dy
        jac[:, :, j] = (rates(yj) - f0) / dy[:, None]
    m = np.eye(k)[None] - GAMMA * h * jac
    k1 = np.linalg.solve(m, f0[..., None])[..., 0]
    k2 = np.linalg.solve(m, (rates(y + h * k1) - 2.0 * k1)[..., None])[..., 0]
    out = (y + 1.5 * h * k1 + 0.5 * h * k2)[:, :-1]
    if scalar:
        return tuple(float(v) for v in out[0])
    return tuple(out.T)
