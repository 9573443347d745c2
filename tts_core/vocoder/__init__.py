"""The HiFT vocoder: generator, harmonic source, Snake kernel."""
