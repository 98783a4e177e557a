"""The host side of a chip run, in plain numpy: the client contract, validation, the link
between a jitted `observe` and a client, and recorded-run files."""
