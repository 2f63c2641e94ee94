"""Decisions: advise factors before training, select the pixel size after, plan the acquisition."""
