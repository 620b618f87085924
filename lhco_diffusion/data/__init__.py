"""From the raw LHC Olympics file to model-ready arrays."""
