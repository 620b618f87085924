"""The ``python -m lhco_diffusion.<step>`` entry points: parse, load, call one workflow function, print."""
