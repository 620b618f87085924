"""Networks and the diffusion objective."""
