"""Routes per audience."""
