"""The composition root: the `tickbridge` command line and the wiring it needs (settings, the
demo). It may import every layer; nothing imports it."""
