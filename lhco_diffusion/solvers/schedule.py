"""Cosine log-SNR noise schedule of the variance-preserving diffusion (DESIGN.md, Diffusion).

    logsnr(t) = -2 log tan(a t + b),  b = atan(exp(-lmax/2)),  a = atan(exp(-lmin/2)) - b
    alpha^2 = sigmoid(logsnr),  sigma^2 = sigmoid(-logsnr),  x_t = alpha x + sigma eps

with lmin = -20, lmax = 20, so logsnr(0) = 20 (alpha ~ 1) and logsnr(1) = -20 (alpha ~ 5e-5).
The probability-flow ODE uses f(t) = dlog(alpha)/dt and g^2(t) = d(sigma^2)/dt - 2 f sigma^2,
which for this schedule reduce to f = sigma^2 logsnr'/2 and g^2 = -sigma^2 logsnr'.

Every function takes and returns tensors (or anything ``tf.convert_to_tensor`` accepts) of any
shape, elementwise; ``t`` is in [0, 1].
"""
from __future__ import annotations

import math

import tensorflow as tf

LOGSNR_MIN = -20.0
LOGSNR_MAX = 20.0
_B = math.atan(math.exp(-0.5 * LOGSNR_MAX))
_A = math.atan(math.exp(-0.5 * LOGSNR_MIN)) - _B


def logsnr(t):
    """log(alpha^2 / sigma^2) at time ``t``: 20 at t=0, -20 at t=1."""
    t = tf.convert_to_tensor(t, tf.float32)
    return -2.0 * tf.math.log(tf.math.tan(_A * t + _B))


def time_from_logsnr(value):
    """Inverse of ``logsnr``: the time at which the log-SNR equals ``value``."""
    value = tf.convert_to_tensor(value, tf.float32)
    return (tf.math.atan(tf.exp(-0.5 * value)) - _B) / _A


def alpha_sigma(t):
    """``(alpha, sigma)`` at time ``t``, with alpha^2 + sigma^2 = 1."""
    snr = logsnr(t)
    return tf.sqrt(tf.math.sigmoid(snr)), tf.sqrt(tf.math.sigmoid(-snr))


def dlogsnr_dt(t):
    """d logsnr / dt = -4 a / sin(2 (a t + b)), negative everywhere."""
    t = tf.convert_to_tensor(t, tf.float32)
    return -4.0 * _A / tf.math.sin(2.0 * (_A * t + _B))


def drift_diffusion(t):
    """``(f, g2)`` of the forward SDE dx = f x dt + g dW at time ``t``."""
    sigma2 = tf.math.sigmoid(-logsnr(t))
    slope = dlogsnr_dt(t)
    return 0.5 * sigma2 * slope, -sigma2 * slope


def likelihood_weighted_time(u):
    """Map uniform ``u`` in [0, 1] to t uniform in log-SNR (maximum-likelihood training)."""
    u = tf.convert_to_tensor(u, tf.float32)
    return time_from_logsnr(LOGSNR_MAX + (LOGSNR_MIN - LOGSNR_MAX) * u)
