"""``python -m tunnelproof.emulator``: the emulator command alone (fast start)."""

from tunnelproof.emulator.cli import main

if __name__ == "__main__":
    main()
