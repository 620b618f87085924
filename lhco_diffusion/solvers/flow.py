"""ODE solvers for a flow-matching velocity field (DESIGN.md, Flow matching).

    x = sample(v_fn, noise, num_steps=100, solver="midpoint", mask=mask)          # t = 0 -> 1
    x = partial_diffusion(v_fn, x1, t_star=0.5, num_steps=100, seed=3)            # x1 -> t* -> data

Time runs from t = 0 (noise, N(0, I)) to t = 1 (data), and ``v_fn(x, t, *args)`` is dx/dt itself
(x (batch, ...), t (batch, 1), conditioning tensors ``args``), as ``models.flow_matching`` trains
it. The grid is uniform in t; the step loop, its single tf.function trace per ``v_fn`` and the
masking (padded entries stay exactly 0) are those of ``solvers.sampling.integrate``, and so is
the optional XLA compilation of the loop:

    euler     x + h v(x, t)                                      1 evaluation per step, order 1
    midpoint  x + h v(x + h/2 v(x, t), t + h/2)                  2 evaluations per step, order 2
    heun      x + h/2 [v(x, t) + v(x + h v(x, t), t + h)]        2 evaluations per step, order 2

The published EPiC-FM LHCO configuration samples with midpoint and 50 to 100 steps.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from lhco_diffusion.solvers.sampling import Solver, integrate


def evaluations(solver: str, num_steps: int) -> int:
    """Network evaluations (calls of ``v_fn``) that ``sample`` makes with ``num_steps`` steps."""
    _check(solver, num_steps)
    return _SOLVERS[solver].evaluations_per_step * num_steps


def sample(v_fn, x_init, num_steps: int, solver: str = "midpoint", mask=None, t_start: float = 0.0,
           args=(), jit_compile: bool = False) -> tf.Tensor:
    """Integrate dx/dt = v from ``t_start`` to 1 in ``num_steps`` uniform steps.

    x_init: (batch, ...) float32 state at ``t_start`` (pure noise N(0, I) for t_start = 0).
    mask: (batch, ..., 1) 1 for real entries, 0 for padding; None means all real.
    args: tensors (or arrays) passed on to every ``v_fn(x, t, *args)`` call.
    Returns the (batch, ...) float32 state at t = 1.
    """
    _check(solver, num_steps)
    if not 0.0 <= t_start < 1.0:
        raise ValueError(f"t_start must be in [0, 1), not {t_start}")
    times = tf.constant(np.linspace(t_start, 1.0, num_steps + 1), tf.float32)
    return integrate(v_fn, _SOLVERS[solver], x_init, mask, times, args, jit_compile)


def steps_above(t_start: float, num_steps: int) -> int:
    """Steps of the ``num_steps``-step grid on [0, 1] that lie above ``t_start``, rounded up (so
    steps are never longer than in full generation)."""
    return max(1, math.ceil(round(num_steps * (1.0 - t_start), 6)))


def partial_diffusion(v_fn, x1, t_star: float, num_steps: int, solver: str = "midpoint", mask=None,
                      seed=None, args=(), sigma_min: float = 1.0e-4, jit_compile: bool = False) -> tf.Tensor:
    """Partial generation from existing data x1 (batch, ...): move it back along the OT path to
    flow time t = 1 - ``t_star``, x_t = (1 - (1 - sigma_min) t) x0 + t x1 with fresh noise x0, and
    integrate to 1 with the (new) conditioning ``args`` of ``v_fn``.

    ``t_star`` in (0, 1] is the noise level as for diffusion (1 = pure noise, i.e. full
    generation; towards 0 the output approaches x1). ``num_steps`` counts steps over the whole
    [0, 1] interval (``steps_above``). x0 = ``numpy.random.default_rng(seed).standard_normal``.
    ``sigma_min`` is the generator's (``training.sigma_min``). Returns (batch, ...) float32.
    """
    if not 0.0 < t_star <= 1.0:
        raise ValueError(f"t_star must be in (0, 1], not {t_star}")
    return denoise(v_fn, noised(x1, t_star, seed, sigma_min), t_star, num_steps, solver, mask, args, jit_compile)


def noised(x1, t_star: float, seed=None, sigma_min: float = 1.0e-4) -> tf.Tensor:
    """x1 (batch, ...) moved back along the OT path to flow time 1 - ``t_star`` with fresh noise x0
    (``numpy.random.default_rng(seed).standard_normal``): (1 - (1 - sigma_min) t) x0 + t x1."""
    x1 = tf.convert_to_tensor(x1, tf.float32)
    noise = np.random.default_rng(seed).standard_normal(x1.shape).astype(np.float32)
    t = 1.0 - t_star
    return (1.0 - (1.0 - sigma_min) * t) * noise + t * x1


def denoise(v_fn, x_t, t_star: float, num_steps: int, solver: str = "midpoint", mask=None, args=(),
            jit_compile: bool = False) -> tf.Tensor:
    """Integrate a state x_t (batch, ...) at noise level ``t_star`` (flow time 1 - t_star) to the
    data end with the part of the ``num_steps``-step grid above it (``steps_above``)."""
    t = 1.0 - t_star
    return sample(v_fn, x_t, steps_above(t, num_steps), solver, mask, t, args, jit_compile)


def _check(solver: str, num_steps: int) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver '{solver}'; valid flow-matching solvers: {', '.join(SOLVERS)}")
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, not {num_steps}")


def _euler_step(velocity, x, memory, t, t_next):
    x_next = x + (t_next - t) * velocity(x, t)
    return x_next, memory, x_next


def _midpoint_step(velocity, x, memory, t, t_next):
    h = t_next - t
    x_next = x + h * velocity(x + 0.5 * h * velocity(x, t), t + 0.5 * h)
    return x_next, memory, x_next


def _heun_step(velocity, x, memory, t, t_next):
    h = t_next - t
    slope = velocity(x, t)
    x_next = x + 0.5 * h * (slope + velocity(x + h * slope, t_next))
    return x_next, memory, x_next


# One-step rules on a t-uniform grid (``log_snr_grid`` concerns the diffusion schedule only).
_SOLVERS = {"euler": Solver(_euler_step, 1, log_snr_grid=False),
            "midpoint": Solver(_midpoint_step, 2, log_snr_grid=False),
            "heun": Solver(_heun_step, 2, log_snr_grid=False)}
SOLVERS = tuple(_SOLVERS)
