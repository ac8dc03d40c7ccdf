import sys

from chot.cli import main

sys.exit(main())
