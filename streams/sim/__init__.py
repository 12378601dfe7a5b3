"""Simulated traffic material the project ships: a prompt corpus written for Warden
(``streams.sim.corpus``), so tests and examples need no data from outside the repository."""
