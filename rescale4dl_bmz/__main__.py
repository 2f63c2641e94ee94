import sys

from rescale4dl_bmz.cli.main import main

sys.exit(main())
