"""`python -m trajsv_jax.cli`."""

import sys

from trajsv_jax.cli import main

sys.exit(main())
