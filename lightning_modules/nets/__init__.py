"""Plain nn.Modules built from constructor arguments; no Lightning, no data code."""
