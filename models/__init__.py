"""Torch networks and losses: NGCC-PHAT, wav2pos, SELD models, the ADPIT loss family."""
