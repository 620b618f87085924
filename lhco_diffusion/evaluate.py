"""``python -m lhco_diffusion.evaluate``: see ``lhco_diffusion.commands.evaluate``."""
from lhco_diffusion.commands.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
