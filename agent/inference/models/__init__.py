"""Models committed with the engine (the thin-path smoke model) and the scripts that write them."""
