"""Pendra worker: the headless runtime that serves Pendra API traffic from this machine."""

__version__ = "0.1.0"
