import sys

from GlandSegLib.cli.main import main

sys.exit(main())
