import sys

from ipamguard.cli import main

sys.exit(main())
