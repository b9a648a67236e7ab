"""A protocol-faithful local Live API server with fault controls."""
