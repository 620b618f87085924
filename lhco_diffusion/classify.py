"""``python -m lhco_diffusion.classify``: see ``lhco_diffusion.commands.classify``."""
from lhco_diffusion.commands.classify import main

if __name__ == "__main__":
    raise SystemExit(main())
