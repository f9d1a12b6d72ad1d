import sys

from natbench.cli import main

sys.exit(main())
