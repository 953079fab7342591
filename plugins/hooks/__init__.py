"""Built-in hooks plugins, one file each."""
