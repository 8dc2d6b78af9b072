"""`python -m edgecorn` and the `edgecorn` console script."""

import sys

from edgecorn import cli


def main() -> None:
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
