"""``python -m corrvos ...`` runs the command line (also ``torchrun -m corrvos train ...``)."""

import sys

from corrvos.cli import main

sys.exit(main())
