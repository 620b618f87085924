"""lhco_diffusion.solvers.sampling against a Gaussian data distribution whose v-prediction is exact.

For x ~ N(mu, s^2) (elementwise) and x_t = alpha x + sigma eps:
    x_t ~ N(alpha mu, alpha^2 s^2 + sigma^2),  E[x | x_t] = mu + alpha s^2 (x_t - alpha mu) / var,
    eps_hat = (x_t - alpha x_hat) / sigma = sigma (x_t - alpha mu) / var,
    v = alpha eps_hat - sigma x_hat = sigma (alpha (1 - s^2) (x_t - alpha mu) / var - mu),
and the probability-flow ODE maps x_1 to x_0 = mu + s (x_1 - alpha_1 mu) / sqrt(var_1) exactly,
so solver errors can be measured on a fixed noise batch with no Monte Carlo noise at all.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lhco_diffusion.solvers import sampling
from lhco_diffusion.solvers import schedule

SOLVER_STEPS = {"ddim": 512, "ddim2": 256, "dpm2": 128, "dpm2m": 256}  # solver error well below the MC error
TABLE_STEPS = (16, 32, 64, 128, 256, 384, 512)
DPM2M_MATCHING_STEPS = 384  # dpm2m's steps for ddim2@512's accuracy on this test (the fast configs' choice)
ACCURATE = 1.0e-3  # |std ratio - 1| below the MC precision of a 200k-event template (1.6e-3)


class Gaussian:
    """x ~ N(mu, diag(width^2)) along the last axis, with its exact v(x_t, t); a v_fn."""

    def __init__(self, mu, width):
        self.mu = np.asarray(mu, np.float32)
        self.width = np.asarray(width, np.float32)

    def __call__(self, x, t, shift=0.0):
        """v of x (batch, ..., d) at t (batch, 1); a conditioning ``shift`` moves the mean."""
        t = tf.reshape(t, [-1] + [1] * (x.shape.rank - 1))
        alpha, sigma = schedule.alpha_sigma(t)
        variance = alpha**2 * self.width**2 + sigma**2
        mu = self.mu + shift
        return sigma * (alpha * (1.0 - self.width**2) * (x - alpha * mu) / variance - mu)

    def draw(self, shape, seed) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (self.mu + self.width * rng.standard_normal(shape)).astype(np.float32)

    def ode_map(self, noise) -> np.ndarray:
        """The exact probability-flow ODE solution at t = 0 started from ``noise`` at t = 1."""
        alpha, sigma = (float(value) for value in schedule.alpha_sigma(1.0))
        spread = np.sqrt(alpha**2 * self.width.astype(np.float64) ** 2 + sigma**2)
        return self.mu + self.width * (noise - alpha * self.mu) / spread

    def log_density(self, x, mask=None) -> np.ndarray:
        """(batch,) log N(x; mu, width^2) summed over the real entries of x (batch, ..., d)."""
        z = (np.asarray(x, np.float64) - self.mu) / self.width
        per_entry = -0.5 * z**2 - np.log(self.width) - 0.5 * np.log(2.0 * np.pi)
        if mask is not None:
            per_entry = per_entry * np.broadcast_to(mask, per_entry.shape)
        return per_entry.reshape(len(per_entry), -1).sum(axis=1)


PLAIN = Gaussian(mu=[0.3, -1.0, 0.0, 2.0], width=[0.3, 0.5, 0.8, 1.0])
CLOUD = Gaussian(mu=[-0.5, 0.2, 1.0], width=[0.4, 0.7, 1.0])
NARROW = Gaussian(mu=[0.3, -1.0, 0.0, 2.0, 0.5, -0.2, 0.1, 1.0],
                  width=[0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0])


def point_cloud_mask(batch: int, slots: int, seed: int) -> np.ndarray:
    """(batch, slots, 1) float32: the first N slots real, N uniform in [1, slots]."""
    multiplicity = np.random.default_rng(seed).integers(1, slots + 1, size=batch)
    return (np.arange(slots) < multiplicity[:, None]).astype(np.float32)[..., None]


def assert_matches_gaussian(samples: np.ndarray, gaussian: Gaussian, sigmas: float = 4.0) -> None:
    """Mean and std of samples (n, d) agree with the Gaussian within ``sigmas`` MC errors."""
    n = len(samples)
    mean_error = np.abs(samples.mean(axis=0) - gaussian.mu) / (gaussian.width / np.sqrt(n))
    std_error = np.abs(samples.std(axis=0) / gaussian.width - 1.0) * np.sqrt(2.0 * n)
    assert mean_error.max() < sigmas, f"mean off by {mean_error.max():.1f} MC sigma"
    assert std_error.max() < sigmas, f"std off by {std_error.max():.1f} MC sigma"


@pytest.mark.parametrize("solver", sampling.SOLVERS)
def test_samples_follow_the_gaussian(solver):
    noise = np.random.default_rng(1).standard_normal((10_000, 4)).astype(np.float32)
    samples = sampling.sample(PLAIN, noise, SOLVER_STEPS[solver], solver).numpy()
    assert samples.shape == noise.shape and samples.dtype == np.float32
    assert_matches_gaussian(samples, PLAIN)


@pytest.mark.parametrize("solver", sampling.SOLVERS)
def test_masked_point_clouds_follow_the_gaussian_and_padding_stays_zero(solver):
    mask = point_cloud_mask(2_000, slots=6, seed=2)
    noise = np.random.default_rng(3).standard_normal((2_000, 6, 3)).astype(np.float32)  # noise in padding too
    samples = sampling.sample(CLOUD, noise, SOLVER_STEPS[solver], solver, mask=mask).numpy()
    assert np.all(samples[mask[..., 0] == 0] == 0.0)
    assert_matches_gaussian(samples[mask[..., 0] == 1], CLOUD)


def _std_error(solver: str, num_steps: int, noise: np.ndarray) -> float:
    """max over features of |std(sample) / std(exact ODE map) - 1| for the same noise."""
    samples = sampling.sample(NARROW, noise, num_steps, solver).numpy()
    return float(np.max(np.abs(samples.std(axis=0) / NARROW.ode_map(noise).std(axis=0) - 1.0)))


def test_solver_error_table():
    """Deterministic solver error: the same noise through each solver and the exact ODE map."""
    noise = np.random.default_rng(4).standard_normal((4_096, 8)).astype(np.float32)
    errors = {solver: [_std_error(solver, n, noise) for n in TABLE_STEPS] for solver in sampling.SOLVERS}
    print("\nrelative error of the sampled std, widths 0.05 ... 1 (max over features)")
    print("solver " + "".join(f"{n:>10d}" for n in TABLE_STEPS) + "   (steps)")
    for solver, row in errors.items():
        print(f"{solver:<6} " + "".join(f"{error:10.2e}" for error in row))
    ddim, ddim2, dpm2, dpm2m = (dict(zip(TABLE_STEPS, errors[solver])) for solver in ("ddim", "ddim2", "dpm2", "dpm2m"))
    assert ddim2[512] < ACCURATE
    assert dpm2[64] < 1.0e-2  # within 1 %, which ddim2 misses at 128 steps
    assert all(dpm2[n] <= ddim2[n] for n in TABLE_STEPS)  # equal cost: both make 2 calls per step
    assert 3.0 < ddim[128] / ddim[512] < 5.0  # first order
    assert 10.0 < dpm2[128] / dpm2[512] < 20.0  # second order (float32 floor ~1e-4 at 512)
    assert 12.0 < dpm2m[64] / dpm2m[256] < 20.0  # second order
    assert all(dpm2m[2 * n] < dpm2[n] / 3.0 for n in (32, 64, 128, 256))  # equal cost: 2M 3.8x better
    matching = min(n for n in TABLE_STEPS if dpm2m[n] <= ddim2[512])
    assert matching == DPM2M_MATCHING_STEPS  # 384 evaluations instead of ddim2@512's 1024
    print(f"dpm2m matches ddim2@512 ({ddim2[512]:.2e}) at {matching} steps: {dpm2m[matching]:.2e}, "
          f"{sampling.evaluations('ddim2', 512) / sampling.evaluations('dpm2m', matching):.2f}x fewer evaluations")
    # Wanted: dpm2 with 128 evaluations (64 steps) as accurate as ddim2 with 1024 (512 steps, 1.7e-4).
    # Not met, and no generic solver of the DPM-Solver-2 family meets it. Measured on this test
    # (float64 model of it; float32 runs agree where checked), no grid fitted to these widths:
    #   second-order solver, data prediction             error @ 128 evals   evals to reach 1.7e-4
    #   2S r=1/2, log-SNR-uniform on [-20, 20] (dpm2)        5.8e-3               768
    #   2S r=1/2, phi_2 coefficients                         2.0e-3               448
    #   2S r=1/2, time-quadratic grid                        2.9e-3               544
    #   2S or 2M, Karras rho=7 grid (sigma/alpha e^-10..e^10)  >= 1.4e-2           >= 1088
    #   2M multistep (1 eval per step), log-SNR-uniform      1.5e-3               384   dpm2m
    #   2M, log-SNR-uniform on [-10, 20] after one step from -20 (unit-variance data)  8.7e-4   288
    # The error is the same for every width (a Gaussian's ODE only shifts along log-SNR with its
    # width) and second order in the step, so 8x fewer evaluations need a ~30x smaller error
    # constant; even log-SNR ranges fitted to these widths leave 2S and 2M at 8e-4 or more. 2S with phi_2
    # coefficients and r = 0.324 gets 1e-6 here only because its two leading error terms cancel
    # for Gaussian data: on Gaussian mixtures its ODE-map error at 128 evaluations is 10-40x that
    # of ddim2 at 1024, so it is not an honest way to meet the target.
    needed = 128 * np.sqrt(dpm2[128] / ddim2[512])  # steps, from the second-order decay of dpm2
    print(f"dpm2 needs ~{2 * needed:.0f} evaluations for ddim2@512's {ddim2[512]:.1e} (target 128); "
          f"dpm2m: {dpm2m[128]:.1e} at 128 evaluations, {DPM2M_MATCHING_STEPS} to reach it")


def test_masks_accept_padding_in_any_leading_axis():
    events = Gaussian(CLOUD.mu, CLOUD.width)  # its own v_fn: a v_fn sees one input rank
    mask = point_cloud_mask(8, slots=5, seed=5).reshape(4, 2, 5, 1)  # (batch, jets, P, 1)
    noise = np.random.default_rng(6).standard_normal((4, 2, 5, 3)).astype(np.float32)
    samples = sampling.sample(events, noise, 8, "dpm2", mask=mask).numpy()
    assert samples.shape == (4, 2, 5, 3)
    assert np.all(samples[mask[..., 0] == 0] == 0.0) and np.all(samples[mask[..., 0] == 1] != 0.0)


def _counting(v_fn):
    """(v_fn that counts its executions in a tf.Variable, the variable)."""
    calls = tf.Variable(0, dtype=tf.int64)

    def counted(x, t):
        calls.assign_add(1)
        return v_fn(x, t)

    return counted, calls


@pytest.mark.parametrize("solver", sampling.SOLVERS)
def test_network_evaluations_are_counted(solver):
    counted, calls = _counting(PLAIN)
    noise = np.zeros((3, 4), np.float32)
    for num_steps in (1, 7):
        calls.assign(0)
        sampling.sample(counted, noise, num_steps, solver)
        assert int(calls.numpy()) == sampling.evaluations(solver, num_steps)


def test_conditioning_goes_through_args_without_retracing():
    traces = []

    def conditional(x, t, shift):  # runs in Python only while the step loop is traced
        traces.append(1)
        return PLAIN(x, t, shift)

    noise = np.random.default_rng(21).standard_normal((200, 4)).astype(np.float32)
    for seed in (22, 23):
        shift = np.random.default_rng(seed).standard_normal((200, 4)).astype(np.float32)
        shifted = sampling.sample(conditional, noise, 32, "dpm2", args=(tf.constant(shift),)).numpy()
        expected = sampling.sample(Gaussian(PLAIN.mu + shift, PLAIN.width), noise, 32, "dpm2").numpy()
        np.testing.assert_allclose(shifted, expected, atol=1e-5)
    assert len(traces) == 2  # both calls of the first trace (re-noise and midpoint), none since


def test_bad_solver_names_and_step_counts_are_refused():
    noise = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="ddim, ddim2, dpm2"):
        sampling.sample(PLAIN, noise, 8, solver="euler")
    for steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="num_steps"):
            sampling.sample(PLAIN, noise, steps)
    with pytest.raises(ValueError, match="t_star"):
        sampling.partial_diffusion(PLAIN, noise, 0.0, 8)


def test_time_grids_run_from_t_start_to_zero():
    for solver in sampling.SOLVERS:
        times = sampling.time_grid(solver, 10, t_start=0.7).numpy()
        assert times[0] == np.float32(0.7) and times[-1] == 0.0 and np.all(np.diff(times) < 0)
    log_snr = schedule.logsnr(sampling.time_grid("dpm2", 10)).numpy()
    np.testing.assert_allclose(np.diff(log_snr), 4.0, atol=2e-3)  # uniform in log-SNR
    np.testing.assert_allclose(np.diff(sampling.time_grid("ddim2", 10).numpy()), -0.1, atol=1e-6)


# ---------------------------------------------------------------- partial diffusion (Drapes)


@pytest.mark.parametrize("solver", sampling.SOLVERS)
def test_partial_diffusion_from_one_is_full_generation(solver):
    x0 = PLAIN.draw((500, 4), seed=7)
    noise = np.random.default_rng(8).standard_normal(x0.shape).astype(np.float32)
    full = sampling.sample(PLAIN, noise, 64, solver).numpy()
    partial = sampling.partial_diffusion(PLAIN, x0, 1.0, 64, solver, seed=8).numpy()
    np.testing.assert_allclose(partial, full, atol=1e-3)


@pytest.mark.parametrize("solver", sampling.SOLVERS)
def test_partial_diffusion_near_zero_returns_the_input(solver):
    x0 = PLAIN.draw((1_000, 4), seed=9)
    t_star = 1.0e-3
    _, sigma = schedule.alpha_sigma(t_star)
    out = sampling.partial_diffusion(PLAIN, x0, t_star, 512, solver, seed=10).numpy()
    assert np.max(np.abs(out - x0)) < 6.0 * float(sigma)  # the re-noising, not more


@pytest.mark.parametrize("t_star", [0.1, 0.5, 0.9])
def test_partial_diffusion_preserves_mean_and_covariance(t_star):
    x0 = PLAIN.draw((20_000, 4), seed=11)
    out = sampling.partial_diffusion(PLAIN, x0, t_star, 256, seed=12).numpy()
    assert_matches_gaussian(out, PLAIN)
    correlation = np.corrcoef(out, rowvar=False)
    assert np.max(np.abs(correlation - np.eye(4))) < 4.0 / np.sqrt(len(out))


def test_partial_diffusion_keeps_padding_zero():
    mask = point_cloud_mask(50, slots=6, seed=13)
    x0 = CLOUD.draw((50, 6, 3), seed=14) * mask
    out = sampling.partial_diffusion(CLOUD, x0, 0.4, 64, "dpm2", mask=mask, seed=15).numpy()
    assert np.all(out[mask[..., 0] == 0] == 0.0)


@pytest.mark.parametrize("solver", sampling.SOLVERS)
def test_partial_diffusion_evaluations_scale_with_t_star(solver):
    counted, calls = _counting(PLAIN)
    x0 = PLAIN.draw((3, 4), seed=16)
    made = []
    for t_star in (0.25, 0.5, 1.0):
        calls.assign(0)
        sampling.partial_diffusion(counted, x0, t_star, 64, solver, seed=17)
        made.append(int(calls.numpy()))
        assert made[-1] == sampling.evaluations(solver, sampling.steps_below(solver, t_star, 64))
    assert made[0] < made[1] < made[2] == sampling.evaluations(solver, 64)
    if solver in ("ddim", "ddim2"):  # t-uniform grids: proportional to t_star
        assert made == [made[2] // 4, made[2] // 2, made[2]]


def test_partial_diffusion_is_reproducible_with_a_seed():
    x0 = PLAIN.draw((10, 4), seed=18)
    first, second, other = (sampling.partial_diffusion(PLAIN, x0, 0.5, 32, seed=seed).numpy()
                            for seed in (19, 19, 20))
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def test_a_mask_without_the_feature_axis_is_refused():
    with pytest.raises(ValueError, match=r"\(batch, ..., 1\)"):
        sampling.sample(CLOUD, np.zeros((4, 5, 3), np.float32), 4, mask=np.ones((4, 5), np.float32))


@pytest.mark.parametrize("solver", ["dpm2", "dpm2m"])  # ddim2's first step amplifies rounding by 1e4
def test_the_xla_compiled_step_loop_gives_the_same_samples(solver):
    mask = point_cloud_mask(64, slots=6, seed=24)
    noise = np.random.default_rng(25).standard_normal((64, 6, 3)).astype(np.float32)
    plain, compiled = (sampling.sample(CLOUD, noise, 16, solver, mask=mask, jit_compile=jit).numpy()
                       for jit in (False, True))
    np.testing.assert_allclose(compiled, plain, atol=1e-5)
    assert np.all(compiled[mask[..., 0] == 0] == 0.0)
