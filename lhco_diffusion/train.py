"""``python -m lhco_diffusion.train``: see ``lhco_diffusion.commands.train``."""
from lhco_diffusion.commands.train import main

if __name__ == "__main__":
    raise SystemExit(main())
