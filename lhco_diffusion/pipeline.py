"""``python -m lhco_diffusion.pipeline``: see ``lhco_diffusion.commands.pipeline``."""
from lhco_diffusion.commands.pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
