"""tunnelproof."""
