import sys

from optik.cli import main

sys.exit(main())
