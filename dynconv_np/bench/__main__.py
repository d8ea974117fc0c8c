"""``python -m dynconv_np.bench``: the same as ``python -m dynconv_np bench``."""
import sys

from . import main

sys.exit(main())
