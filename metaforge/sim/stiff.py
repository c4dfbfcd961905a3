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
    import numpy as np

    scalar = all(np.ndim(y) == 0 for y in ys)
    y = np.atleast_2d(np.array(np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in ys]), dtype=float).reshape(len(ys), -1).T)
    n, k = y.shape

    def rates(state, tt):
        out = f(tt, *state.T, *args)
        return np.array(np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in out]), dtype=float).reshape(k, -1).T \
            * np.ones((n, 1))

    f0 = rates(y, t)
    jac = np.empty((n, k, k))
    for j in range(k):
        dy = 1e-7 * np.maximum(1.0, np.abs(y[:, j]))
        yj = y.copy()
        yj[:, j] += dy
        jac[:, :, j] = (rates(yj, t) - f0) / dy[:, None]
    m = np.eye(k)[None] - GAMMA * h * jac
    k1 = np.linalg.solve(m, f0[..., None])[..., 0]
    k2 = np.linalg.solve(m, (rates(y + h * k1, t + h) - 2.0 * k1)[..., None])[..., 0]
    out = y + 1.5 * h * k1 + 0.5 * h * k2
    if scalar:
        return tuple(float(v) for v in out[0])
    return tuple(out.T)
