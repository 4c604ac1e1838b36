"""crypto_signals."""
