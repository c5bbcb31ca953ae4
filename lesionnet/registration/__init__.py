"""Affine registration (SimpleITK) and the Gaussian anatomy maps that carry a lesion through it."""
