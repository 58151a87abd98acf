"""Multi-stage recipes: broad sweep -> narrow sweep -> seed re-check -> promotion."""
