"""pytest fixtures (emulator); exported through tunnelproof.testing.pytest_plugin."""
