"""pytest fixtures (tunnel); exported through tunnelproof.testing.pytest_plugin."""
