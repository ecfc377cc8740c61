"""mdi_mlmm: ML/MM simulation and hydration free energies over the MolSSI Driver Interface."""
__version__ = "0.1.0"
