"""The decoder's share: prune and distil the VAE decoder (VDMini / Lightning Video)."""
