"""Pure rules: no I/O, no clock, no unseeded randomness. See core/README.md."""
