"""Model pieces: MAE-LM's positioned encoder, decoder and gather/scatter
layout; the mask proposal network (MAPNet)."""
