import sys

from landmark.cli import main

sys.exit(main())
