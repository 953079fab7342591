"""Built-in losses plugins, one file each."""
