"""``python -m lhco_diffusion.sample``: see ``lhco_diffusion.commands.sample``."""
from lhco_diffusion.commands.sample import main

if __name__ == "__main__":
    raise SystemExit(main())
