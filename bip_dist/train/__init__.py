"""Trainers: the per-iteration step objects and the loop that drives them."""
