"""Pure numerics on any velocity field: the diffusion schedule, ODE samplers and the likelihood.

No files, no configuration: each function takes arrays and a ``v_fn`` and returns arrays.
"""
