"""Full-phase-space resonant anomaly detection with point-cloud diffusion models."""
