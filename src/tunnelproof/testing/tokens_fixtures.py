"""pytest fixtures (tokens); exported through tunnelproof.testing.pytest_plugin."""
