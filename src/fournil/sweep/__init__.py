"""`fournil sweep`: many points of one recipe, each its own run folder, sharing every stage a point
does not change, compared in one report (docs/sweep.md)."""
