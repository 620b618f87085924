"""The steps of the search as library functions: train, generate, classify, score, evaluate.

Each module is one job; ``lhco_diffusion.commands`` wraps them for the command line.
"""
