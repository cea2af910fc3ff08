"""The market in the live service: offers, bids, rounds, reserved blocks, quotes (see README.md)."""
