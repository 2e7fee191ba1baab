"""`python -m klp_ld`: the same entry point as the `klp-ld` command."""

import sys

from klp_ld.launch import main

sys.exit(main())
