"""Built-in optimizers plugins, one file each."""
