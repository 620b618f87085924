"""Workflow: the steps of the search built on data, solvers and models (training, generation, evaluation)."""
