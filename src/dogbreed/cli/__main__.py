import sys

from dogbreed.cli import main

sys.exit(main())
