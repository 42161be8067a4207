"""Model pieces: MAE-LM's positioned encoder, decoder and gather/scatter layout."""
