"""The LightningModules of the three stages and the plain nn.Modules they are built from."""
