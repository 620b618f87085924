"""ODE solvers: sampling and likelihoods for any velocity field, pure functions without files."""
