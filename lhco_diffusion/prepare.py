"""``python -m lhco_diffusion.prepare``: see ``lhco_diffusion.commands.prepare``."""
from lhco_diffusion.commands.prepare import main

if __name__ == "__main__":
    raise SystemExit(main())
