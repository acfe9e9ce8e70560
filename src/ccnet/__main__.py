import sys

from ccnet.cli import main

sys.exit(main())
