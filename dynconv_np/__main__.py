"""``python -m dynconv_np``: see ``dynconv_np.cli``."""
import sys

from .cli import main

sys.exit(main())
