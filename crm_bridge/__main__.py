"""``python -m crm_bridge <command>``; see ``crm_bridge.cli``."""

import sys

from crm_bridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
