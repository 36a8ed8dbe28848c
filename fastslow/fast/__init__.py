"""Fast weights: the population of prompts and the GEPA phase that evolves it."""
