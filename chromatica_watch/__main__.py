import sys

from chromatica_watch.cli.main import main

sys.exit(main())
