"""``python -m tunnelproof``: the same command line as the ``tunnelproof`` script."""

from tunnelproof.cli import main

if __name__ == "__main__":
    main()
