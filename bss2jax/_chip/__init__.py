"""What `ChipModel` emulates: configuration, chip instance, placement, setup, dynamics, readout."""
