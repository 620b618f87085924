"""``python -m lhco_diffusion.likelihood``: see ``lhco_diffusion.commands.likelihood``."""
from lhco_diffusion.commands.likelihood import main

if __name__ == "__main__":
    raise SystemExit(main())
