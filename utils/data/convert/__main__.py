"""python -m utils.data.convert ... (see utils/data/convert/cli.py)."""
import sys

from utils.data.convert.cli import main

sys.exit(main())
