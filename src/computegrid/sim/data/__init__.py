"""Static tables for the simulator (regions, electricity prices, latency); each file names its sources."""
